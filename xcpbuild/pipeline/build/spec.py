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
from pathlib import Path
from typing import Any

import jinja2

from xcpbuild.adapters import container
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError
from xcpbuild.log import step
from xcpbuild.model.package import ChangelogEntry, PackageDef, find_package, read_series
from xcpbuild.model.target import Target, find_target

FIRST_PATCH = 1000
CHECK_TIMEOUT = 120.0


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
    package_name: str,
    target_name: str,
    *,
    version: str | None = None,
    tarball: str | None = None,
) -> RenderedSpec:
    """Render ``specs/PKG.spec.j2`` for a target (version and tarball default to the target's pin)."""
    package = find_package(settings.specs_dir, package_name)
    target = find_target(settings.containers_dir, target_name)
    pin = package.pin(target_name)
    version = version or pin.version
    sources = [tarball or package.tarball_name(version), *package.extra_sources]
    patches = [p.name for p in read_series(settings.patches_dir, package.name, pin.series)]
    values = context(package, target, version=version, release=pin.release, sources=sources, patches=patches)
    text = render_text(settings.specs_dir, package.template, values)
    return RenderedSpec(
        package=package.name,
        target=target.name,
        version=version,
        release=pin.release,
        filename=f"{package.name}.spec",
        text=text,
        sources=tuple(sources),
        patches=tuple(patches),
    )


def check(spec: RenderedSpec, image_tag: str, client: container.Client | None = None) -> str:
    """Parse the spec with ``rpmspec -P`` in the target's image; return the expanded spec."""
    engine_client = client if client is not None else container.get_client()
    options = container.ContainerOptions(image=image_tag, workdir="/work", role="spec")
    with step(f"rpmspec -P {spec.filename} in {image_tag}"), container.BuildContainer(engine_client, options) as box:
        box.put_bytes({spec.filename: spec.text.encode()}, "/work")
        result = box.exec(["rpmspec", "-P", f"/work/{spec.filename}"], timeout=CHECK_TIMEOUT, check=False)
    if result.exit_code != 0:
        raise ConfigError(
            f"rpmspec rejects the rendered {spec.filename} for {spec.target}: {result.output.strip()[-500:]}",
            hint=f"fix the template specs/{spec.package}.spec.j2; `xcpbuild spec render` shows the text",
        )
    return result.output
