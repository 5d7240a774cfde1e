"""Packages resolved once, for one target: the object every verb and step takes instead of a name.

Two kinds share one interface (``name``, ``version``, ``release``, ``target``,
``patch_files`` in the order they apply, ``upstream_url``, ``pinned_ref``,
``defines``):

- ``DefinedPackage``: xcpbuild's own definition, ``specs/NAME.toml`` + a spec
  template + ``patches/NAME/series``;
- ``RepoPackage``: a package repository in the xcp-ng-rpms layout
  (``SPECS/NAME.spec`` + ``SOURCES/``), its spec used as it is. rpmspec expands
  it once with the target's %dist and the given ``--define``s, so the SourceN
  and PatchN lines are the ones a build will use.

``resolve`` tells them apart: an existing directory (or anything with a ``/``)
is a package repository, anything else a name in ``specs/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from xcpbuild.adapters import git, rpmspec
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError, PatchError, UsageError
from xcpbuild.model.package import PackageDef, TargetPin, find_package, read_series
from xcpbuild.model.pkgrepo import PackageRepo, SpecFacts, Upstream, locate, spec_facts, spec_upstream
from xcpbuild.model.target import Target, find_target

PackageKind = Literal["definition", "repository"]
Define = tuple[str, str]


def parse_define(value: str) -> Define:
    """``--define 'NAME VALUE'`` as rpm takes it (``NAME=VALUE`` is accepted too)."""
    name, _, rest = value.strip().partition(" ")
    if not rest and "=" in name:
        name, _, rest = name.partition("=")
    name = name.lstrip("%")
    if not name or not name.replace("_", "a").isalnum():
        raise UsageError(
            f"--define {value!r} must look like 'NAME VALUE'", hint="e.g. --define 'xcp_ng_section extras'"
        )
    return name, rest.strip()


@dataclass(frozen=True)
class DefinedPackage:
    """A package of ``specs/``: its definition, the target's pin and its patch series."""

    definition: PackageDef
    target: Target
    pin: TargetPin
    patch_files: tuple[Path, ...]
    defines: tuple[Define, ...] = ()
    kind: ClassVar[PackageKind] = "definition"

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def version(self) -> str:
        return self.pin.version

    @property
    def release(self) -> str:
        return self.pin.release

    @property
    def upstream_url(self) -> str | None:
        return self.definition.upstream

    @property
    def pinned_ref(self) -> str | None:
        return self.pin.ref

    @property
    def where(self) -> Path:
        """The file a user edits to change the package."""
        return self.definition.path

    @property
    def cli_name(self) -> str:
        return self.definition.name


@dataclass(frozen=True)
class RepoPackage:
    """A package repository's spec as rpmspec expanded it for the target, and its files in SOURCES/."""

    repo: PackageRepo
    target: Target
    facts: SpecFacts
    upstream: Upstream
    spec_text: str  # the spec as written: that is what gets built
    patch_files: tuple[Path, ...]
    source_files: tuple[Path, ...]
    checkout: tuple[str, bool] | None  # (commit, dirty) when the repository is a git checkout
    defines: tuple[Define, ...] = ()
    kind: ClassVar[PackageKind] = "repository"

    @property
    def name(self) -> str:
        return self.facts.name

    @property
    def version(self) -> str:
        return self.facts.version

    @property
    def release(self) -> str:
        return self.facts.release

    @property
    def upstream_url(self) -> str | None:
        return self.upstream.url

    @property
    def pinned_ref(self) -> str | None:
        return self.upstream.ref

    @property
    def where(self) -> Path:
        return self.repo.spec_path

    @property
    def cli_name(self) -> str:
        return str(self.repo.path)


Package = DefinedPackage | RepoPackage


def is_repository_argument(settings: Settings, what: str) -> bool:
    if "/" in what or what in (".", ".."):
        return True
    return Path(what).is_dir() and not (settings.specs_dir / f"{what}.toml").exists()


def target_defines(target: Target) -> list[Define]:
    """What the target's image defines for every build: %dist and the XCP-ng release."""
    defines: list[Define] = [("xcpng_release", target.xcpng_release)]
    if target.dist_macro:
        defines.insert(0, ("dist", target.dist_macro))
    return defines


def resolve(settings: Settings, what: str, target: str = "local", *, defines: Sequence[Define] = ()) -> Package:
    """The package ``what`` names (a name in specs/ or a package repository directory) for ``target``."""
    tgt = find_target(settings.containers_dir, target)
    if is_repository_argument(settings, what):
        return resolve_repo(Path(what), tgt, defines=defines)
    definition = find_package(settings.specs_dir, what)
    pin = definition.pin(tgt.name)
    try:
        patches = read_series(settings.patches_dir, definition.name, pin.series)
    except ConfigError as exc:
        raise PatchError(exc.message, hint=exc.hint) from exc
    return DefinedPackage(definition, tgt, pin, tuple(patches), tuple(defines))


def resolve_repo(path: Path, target: Target, *, defines: Sequence[Define] = ()) -> RepoPackage:
    repo = locate(path)
    raw = repo.spec_path.read_text(errors="replace")
    expanded = rpmspec.expand(repo.spec_path, [*target_defines(target), *defines], sourcedir=repo.sources_dir)
    facts = spec_facts(expanded)
    where = repo.sources_dir
    files: dict[str, Path] = {}
    for entry in (*facts.sources, *facts.patches):
        file = where / entry.file
        if not file.is_file():
            raise ConfigError(
                f"{entry.tag}{entry.number} of {repo.spec_path.name} names {entry.file}, which is not in {where}",
                hint=f"add it to {where}/, or fix the {entry.tag}{entry.number}: line",
            )
        files[entry.file] = file
    patch_files = tuple(where / p.file for p in facts.patches)
    source_files = tuple(where / s.file for s in facts.sources)
    return RepoPackage(
        repo=repo,
        target=target,
        facts=facts,
        upstream=spec_upstream(raw, expanded, facts),
        spec_text=raw,
        patch_files=patch_files,
        source_files=source_files,
        checkout=git.checkout_state(repo.path),
        defines=tuple(defines),
    )


def describe(package: Package) -> str:
    return f"{package.name} {package.version}-{package.release}"
