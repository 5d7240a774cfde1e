"""Spec rendering: jinja2 templates in ``specs/`` become RPM specs that follow XCP-ng's conventions.

The template gets the package definition, the target and the patch series:
``Patch1000+`` lines numbered from the series, the XCP-ng release (upstream
release N changed by XCP-ng is N.1, N.2 ..., never N+1) followed by
``%{?dist}`` (after 7.5's literal ``.xcp``), and the changelog from the definition.
Rendering is pure; ``check`` parses the result with ``rpmspec -P`` inside the
target's own image, where the target's macros are defined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from xcpbuild.adapters import container
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError
from xcpbuild.log import step
from xcpbuild.model.package import ChangelogEntry, PackageDef
from xcpbuild.model.target import Target
from xcpbuild.pipeline.sources.package import Package, RepoPackage

FIRST_PATCH = 1000
CHECK_TIMEOUT = 120.0
BOX_DIR = PurePosixPath("/work")


@dataclass(frozen=True)
class RenderedSpec:
    package: str
    target: str
    version: str
    release: str
    filename: str
    text: str
    sources: tuple[str, ...]
    patches: tuple[str, ...]


def release_field(release: str, target: Target) -> str:
    """The Release: value: ``11.2%{?dist}``, or ``4.4.xcp%{?dist}`` on 7.x (literal ``.xcp``, then CentOS's dist)."""
    return f"{release}{target.release_suffix}%{{?dist}}"


def patch_lines(patches: Sequence[str]) -> str:
    """``Patch1000: NAME`` lines, numbered in series order from 1000 (XCP-ng's range for its own patches)."""
    return "\n".join(f"Patch{FIRST_PATCH + index}: {name}" for index, name in enumerate(patches))


def source_lines(sources: Sequence[str]) -> str:
    return "\n".join(f"Source{index}: {name}" for index, name in enumerate(sources))


def changelog_text(entries: Sequence[ChangelogEntry]) -> str:
    """The %changelog body, newest first as the definition lists it."""
    blocks = []
    for entry in entries:
        lines = [f"* {entry.rpm_date} {entry.author} - {entry.version}"]
        lines += [f"- {change}" for change in entry.changes]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def entries_for(entries: Sequence[ChangelogEntry], version: str) -> list[ChangelogEntry]:
    """The entries about builds of ``version`` (``0.20.0-4.4`` for 0.20.0): a 0.43.0 build must not claim 0.20.0's."""
    return [entry for entry in entries if entry.version.startswith(f"{version}-")]


def context(
    package: PackageDef, target: Target, *, version: str, release: str, sources: Sequence[str], patches: Sequence[str]
) -> dict[str, Any]:
    """What a template sees; the changelog holds only the entries of this upstream version."""
    changelog = entries_for(package.changelog, version)
    return {
        "name": package.name,
        "version": version,
        "release": release,
        "release_field": release_field(release, target),
        "summary": package.summary,
        "license": package.license,
        "url": package.url,
        "description": package.description or package.summary,
        "buildarch": package.buildarch,
        "sources": list(sources),
        "source_lines": source_lines(sources),
        "patches": [{"number": FIRST_PATCH + i, "name": name} for i, name in enumerate(patches)],
        "patch_lines": patch_lines(patches),
        "changelog": list(changelog),
        "changelog_text": changelog_text(changelog),
        "target": {
            "name": target.name,
            "dist": target.dist,
            "xcpng_release": target.xcpng_release,
            "userspace": target.userspace,
        },
    }


def render_text(template_dir: Path, template: str, values: dict[str, Any]) -> str:
    import jinja2  # here: a reused build (or a package repository's spec) renders no template

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    try:
        text = env.get_template(template).render(values)
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"spec template {template_dir / template} does not exist") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{exc.filename}:{exc.lineno}: template syntax error: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise ConfigError(
            f"spec template {template} uses an undefined value: {exc.message}",
            hint="templates see: " + ", ".join(sorted(values)),
        ) from exc
    return text if text.endswith("\n") else text + "\n"


def render(
    settings: Settings,
    package: Package,
    *,
    version: str | None = None,
    tarball: str | None = None,
) -> RenderedSpec:
    """The spec a build uses: a package repository's own, or ``specs/PKG.spec.j2`` rendered for the target.

    Version and tarball default to the target's pin; a package repository's spec is taken as it is.
    """
    if isinstance(package, RepoPackage):
        return RenderedSpec(
            package=package.name,
            target=package.target.name,
            version=package.version,
            release=package.release,
            filename=package.repo.spec_path.name,
            text=package.spec_text,
            sources=tuple(s.file for s in package.facts.sources),
            patches=tuple(p.file for p in package.facts.patches),
        )
    definition, target, pin = package.definition, package.target, package.pin
    version = version or pin.version
    sources = [tarball or definition.tarball_name(version), *definition.extra_sources]
    patches = [p.name for p in package.patch_files]
    values = context(definition, target, version=version, release=pin.release, sources=sources, patches=patches)
    text = render_text(settings.specs_dir, definition.template, values)
    return RenderedSpec(
        package=definition.name,
        target=target.name,
        version=version,
        release=pin.release,
        filename=f"{definition.name}.spec",
        text=text,
        sources=tuple(sources),
        patches=tuple(patches),
    )


def check(
    spec: RenderedSpec,
    image_tag: str,
    client: container.Client | None = None,
    *,
    defines: Sequence[tuple[str, str]] = (),
) -> str:
    """Parse the spec with ``rpmspec -P`` in the target's image; return the expanded spec."""
    engine_client = client if client is not None else container.get_client()
    options = container.ContainerOptions(image=image_tag, workdir=BOX_DIR, role="spec")
    argv = ["rpmspec", "-P"]
    for name, value in defines:
        argv += ["--define", f"{name} {value}"]
    with step(f"rpmspec -P {spec.filename} in {image_tag}"), container.BuildContainer(engine_client, options) as box:
        box.put_bytes({spec.filename: spec.text.encode()}, BOX_DIR)
        result = box.exec([*argv, str(BOX_DIR / spec.filename)], timeout=CHECK_TIMEOUT, check=False)
    if result.exit_code != 0:
        raise ConfigError(
            f"rpmspec rejects the rendered {spec.filename} for {spec.target}: {result.output.strip()[-500:]}",
            hint=f"fix the spec of {spec.package} (a template's text is shown by `xcpbuild spec render`)",
        )
    return result.output
