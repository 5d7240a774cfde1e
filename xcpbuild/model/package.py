"""Package definitions: one declarative TOML file per package, ``specs/NAME.toml``.

A definition says where upstream lives, which version and ref each target
builds, the tarball's pinned sha256, extra sources, the spec template and the
changelog. The patch series lives in ``patches/NAME/series``. Unknown keys are
rejected with a "did you mean" hint so a typo never silently changes a build.

Example (abridged)::

    name = "vhd-tool"
    summary = "Command-line tools for manipulating and streaming .vhd format files"
    license = "LGPL+linking exception"
    url = "https://github.com/xapi-project/vhd-tool"
    upstream = "https://github.com/xapi-project/vhd-tool.git"
    template = "vhd-tool.spec.j2"
    extra_sources = ["vhd-tool-sparse_dd-conf"]

    [targets.default]
    version = "0.20.0"
    ref = "v0.20.0"
    base_release = "4"
    xcpng_release = 2

    [targets."xcp-ng-7.5"]
    sha256 = "..."

    [[changelog]]
    version = "0.20.0-4.2"
    date = 2018-08-16
    author = "Name <mail>"
    changes = ["Wait for the socket to be writable instead of retrying on EAGAIN"]
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from xcpbuild.errors import ConfigError
from xcpbuild.model.keys import one_of, read_toml, reject_unknown, require, suggest

_TOP_KEYS = {
    "name",
    "summary",
    "description",
    "license",
    "url",
    "upstream",
    "source_kind",
    "project_paths",
    "template",
    "tarball",
    "extra_sources",
    "buildarch",
    "targets",
    "changelog",
    "probe",
}
_TARGET_KEYS = {"version", "ref", "base_release", "xcpng_release", "sha256", "series", "retired", "health_refs"}
_CHANGELOG_KEYS = {"version", "date", "author", "changes"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
DEFAULT_TARGET = "default"
# "git": an upstream repository; "project": files of this project (packaged from the checkout).
SourceKind = Literal["git", "project"]
SOURCE_KINDS: tuple[SourceKind, ...] = get_args(SourceKind)


@dataclass(frozen=True)
class TargetPin:
    """What one target builds: upstream version and ref, release numbering, pinned tarball."""

    version: str
    ref: str
    base_release: str = "1"
    xcpng_release: int = 0
    sha256: str | None = None
    # File in patches/NAME/ listing this target's patches; "" means the target has none.
    series: str = "series"
    # Non-empty: why this target has no package of its own (pin() refuses it with this reason).
    retired: str = ""
    # Other upstream refs whose patch health the main job reports (where upstream reworked the code).
    health_refs: tuple[str, ...] = ()

    @property
    def release(self) -> str:
        """XCP-ng's rule: changing upstream release N gives N.1, N.2 ..., never N+1."""
        if self.xcpng_release <= 0:
            return self.base_release
        return f"{self.base_release}.{self.xcpng_release}"


@dataclass(frozen=True)
class ChangelogEntry:
    version: str
    date: dt.date
    author: str
    changes: tuple[str, ...]

    @property
    def rpm_date(self) -> str:
        """The date as %changelog wants it: ``Thu Aug 16 2018``."""
        return self.date.strftime("%a %b %d %Y")


@dataclass(frozen=True)
class PackageDef:
    """A package definition as loaded from ``specs/NAME.toml``."""

    name: str
    summary: str
    license: str
    url: str
    template: str
    path: Path
    upstream: str | None = None
    description: str = ""
    source_kind: SourceKind = "git"
    project_paths: tuple[str, ...] = ()
    tarball: str = "{name}-{version}.tar.gz"
    extra_sources: tuple[str, ...] = ()
    buildarch: str | None = None
    targets: Mapping[str, TargetPin] = field(default_factory=dict)
    changelog: tuple[ChangelogEntry, ...] = ()
    probe: Mapping[str, Any] = field(default_factory=dict)

    @property
    def specs_dir(self) -> Path:
        return self.path.parent

    @property
    def extra_sources_dir(self) -> Path:
        """Extra sources live in ``specs/NAME/`` beside the definition."""
        return self.specs_dir / self.name

    def pin(self, target: str) -> TargetPin:
        """The pin for ``target``: its own table over ``default``."""
        pin = self.targets.get(target) or self.targets.get(DEFAULT_TARGET)
        if pin is not None:
            if pin.retired:
                raise ConfigError(
                    f"package {self.name} is not built for target {target}: {pin.retired}",
                    hint=f'build another target, or remove `retired` from [targets."{target}"] in {self.path}',
                )
            return pin
        known = ", ".join(sorted(self.targets)) or "none"
        raise ConfigError(
            f"package {self.name} has no version for target {target} (targets: {known})",
            hint=f'add a [targets."{target}"] or [targets.default] table to {self.path}',
        )

    def tarball_name(self, version: str) -> str:
        return self.tarball.format(name=self.name, version=version)


def _parse_target(name: str, raw: Any, base: TargetPin | None, where: str) -> TargetPin:
    if not isinstance(raw, dict):
        raise ConfigError(f"targets.{name} in {where} must be a table")
    reject_unknown(raw, _TARGET_KEYS, f'[targets."{name}"] of {where}')
    if base is None:
        version = require(raw, "version", str, f'[targets."{name}"] of {where}')
        ref = require(raw, "ref", str, f'[targets."{name}"] of {where}')
        pin = TargetPin(version=version, ref=ref)
    else:
        pin = base
    updates: dict[str, Any] = {}
    for key in ("version", "ref", "base_release", "sha256", "series", "retired"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ConfigError(f'`{key}` in [targets."{name}"] of {where} must be a string')
            updates[key] = raw[key]
    if "xcpng_release" in raw:
        if not isinstance(raw["xcpng_release"], int) or raw["xcpng_release"] < 0:
            raise ConfigError(f'`xcpng_release` in [targets."{name}"] of {where} must be a whole number >= 0')
        updates["xcpng_release"] = raw["xcpng_release"]
    if "health_refs" in raw:
        refs = raw["health_refs"]
        if not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
            raise ConfigError(f'`health_refs` in [targets."{name}"] of {where} must be an array of git refs')
        updates["health_refs"] = tuple(refs)
    series = updates.get("series")
    if series and ("/" in series or series.startswith(".")):
        raise ConfigError(f'`series` in [targets."{name}"] of {where} must be a file name in patches/, or ""')
    sha = updates.get("sha256")
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ConfigError(f'`sha256` in [targets."{name}"] of {where} is not 64 lowercase hex digits')
    return replace(pin, **updates)


def _parse_changelog(raw: Any, where: str) -> tuple[ChangelogEntry, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"`changelog` in {where} must be an array of tables ([[changelog]])")
    entries = []
    for index, item in enumerate(raw):
        at = f"changelog entry {index + 1} of {where}"
        if not isinstance(item, dict):
            raise ConfigError(f"{at} must be a table")
        reject_unknown(item, _CHANGELOG_KEYS, at)
        date = require(item, "date", dt.date, at)
        changes = require(item, "changes", list, at)
        entries.append(
            ChangelogEntry(
                version=require(item, "version", str, at),
                date=date,
                author=require(item, "author", str, at),
                changes=tuple(str(c) for c in changes),
            )
        )
    return tuple(entries)


def load_package(path: Path) -> PackageDef:
    """Load and validate one definition file."""
    where = str(path)
    data = read_toml(path)
    reject_unknown(data, _TOP_KEYS, where)
    name = require(data, "name", str, where)
    if not _NAME_RE.match(name) or name != path.stem:
        raise ConfigError(f"package name `{name}` in {where} must match its file name `{path.stem}`")
    source_kind = one_of(data.get("source_kind", "git"), SOURCE_KINDS)
    if source_kind is None:
        raise ConfigError(f'`source_kind` in {where} must be "git" or "project"')
    raw_targets = data.get("targets", {})
    if not isinstance(raw_targets, dict) or not raw_targets:
        raise ConfigError(f"{where} has no [targets.*] table", hint="add [targets.default] with version and ref")
    targets: dict[str, TargetPin] = {}
    default = None
    if DEFAULT_TARGET in raw_targets:
        default = _parse_target(DEFAULT_TARGET, raw_targets[DEFAULT_TARGET], None, where)
        targets[DEFAULT_TARGET] = default
    for target, raw in raw_targets.items():
        if target != DEFAULT_TARGET:
            targets[target] = _parse_target(target, raw, default, where)
    probe = data.get("probe", {})
    if not isinstance(probe, dict):
        raise ConfigError(f"`probe` in {where} must be a table")
    return PackageDef(
        name=name,
        summary=require(data, "summary", str, where),
        license=require(data, "license", str, where),
        url=require(data, "url", str, where),
        template=require(data, "template", str, where),
        path=path,
        upstream=data.get("upstream") if source_kind == "git" else None,
        description=str(data.get("description", "")).strip(),
        source_kind=source_kind,
        project_paths=tuple(data.get("project_paths", ())),
        tarball=str(data.get("tarball", "{name}-{version}.tar.gz")),
        extra_sources=tuple(data.get("extra_sources", ())),
        buildarch=data.get("buildarch"),
        targets=targets,
        changelog=_parse_changelog(data.get("changelog", []), where),
        probe=probe,
    )


def available_packages(specs_dir: Path) -> list[str]:
    return sorted(p.stem for p in specs_dir.glob("*.toml"))


def find_package(specs_dir: Path, name: str) -> PackageDef:
    """Load ``specs/NAME.toml``, or a ConfigError listing the packages that exist."""
    path = specs_dir / f"{name}.toml"
    if not path.exists():
        known = available_packages(specs_dir)
        hint = suggest(name, known, f"known packages: {', '.join(known) or 'none'}")
        raise ConfigError(f"unknown package `{name}` (no {path})", hint=hint)
    return load_package(path)


def read_series(patches_dir: Path, name: str, series_file: str = "series") -> list[Path]:
    """The patch files of ``patches/NAME/<series_file>`` in order (empty when there is none).

    ``series_file`` "" (a target with no patches) also gives an empty list.
    """
    if not series_file:
        return []
    series = patches_dir / name / series_file
    if not series.exists():
        return []
    patches: list[Path] = []
    for number, line in enumerate(series.read_text().splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if "/" in entry or entry.startswith(".") or " " in entry:
            raise ConfigError(
                f"{series}:{number}: `{line.strip()}` is not a patch file name",
                hint="one file name of patches/NAME/ per line; # starts a comment",
            )
        patch = series.parent / entry
        if not patch.is_file():
            raise ConfigError(f"{series}:{number}: {entry} does not exist in {series.parent}")
        if patch in patches:
            raise ConfigError(f"{series}:{number}: {entry} is listed twice")
        patches.append(patch)
    return patches
