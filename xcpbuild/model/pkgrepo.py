"""Package repositories in the xcp-ng-rpms layout: ``SPECS/NAME.spec`` + ``SOURCES/`` (or a spec at the top).

This module holds what can be read from the files alone: where the spec and the
sources are, whether the repository is retired, git-lfs pointer files, a
``sources`` checksum file, and the facts of a spec once rpmspec has expanded it
(name, version, release, SourceN/PatchN in spec order with conditionals already
resolved, the upstream it names). Expanding the spec itself needs rpmspec, which
only the adapters run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.errors import ConfigError

LFS_HEADER = b"version https://git-lfs.github.com/spec/v1"
_LFS_MAX = 1024  # a pointer file is a few lines; anything bigger is real content
_SOURCES_LINE = (
    re.compile(r"^(?P<algo>[A-Za-z0-9]+) \((?P<name>[^)]+)\) = (?P<digest>[0-9a-fA-F]+)$"),
    re.compile(r"^(?P<digest>[0-9a-fA-F]{32,128})\s+\*?(?P<name>\S+)$"),
)
_ALGO_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_TAG = re.compile(r"^(?P<tag>Source|Patch)(?P<number>\d*)\s*:\s*(?P<value>\S+)", re.IGNORECASE)
_FIELD = re.compile(r"^(?P<tag>Name|Version|Release|Epoch|URL|BuildArch)\s*:\s*(?P<value>.+?)\s*$", re.IGNORECASE)
_GITSHA = re.compile(r"^Provides\s*:\s*gitsha\((?P<url>[^)]+)\)\s*=\s*(?P<sha>[0-9a-f]{7,40})", re.IGNORECASE)
_SRCCOMMIT = re.compile(r"^%global\s+package_srccommit\s+(?P<ref>\S+)", re.MULTILINE)
_BUILD_REQUIRES = re.compile(r"^\s*BuildRequires\s*:\s*(.+)$", re.IGNORECASE)


@dataclass(frozen=True)
class PackageRepo:
    """Where a package repository keeps its spec and its sources."""

    path: Path
    spec_path: Path
    sources_dir: Path

    @property
    def name(self) -> str:
        return self.spec_path.stem


@dataclass(frozen=True)
class LfsPointer:
    oid: str  # sha256 hex of the real file
    size: int


@dataclass(frozen=True)
class Checksum:
    algo: str
    digest: str


@dataclass(frozen=True)
class SpecEntry:
    """One SourceN or PatchN line: its number and the file it names in SOURCES/."""

    tag: str  # "Source" or "Patch"
    number: int
    file: str


@dataclass(frozen=True)
class SpecFacts:
    """A spec as rpmspec expanded it with the build's macros (conditionals resolved)."""

    name: str
    version: str
    release: str
    epoch: str | None
    url: str | None
    buildarch: str | None
    sources: tuple[SpecEntry, ...]
    patches: tuple[SpecEntry, ...]
    build_requires: tuple[str, ...]


@dataclass(frozen=True)
class Upstream:
    """The upstream a spec names, for patch health: a git URL (or None) and a ref (or None)."""

    url: str | None
    ref: str | None
    said_by: str  # which line said so, for messages


def is_package_repo(path: Path) -> bool:
    """A directory with SPECS/, a .retired marker or a top-level spec."""
    return path.is_dir() and ((path / "SPECS").is_dir() or (path / ".retired").exists() or any(path.glob("*.spec")))


def retired_reason(path: Path) -> str | None:
    """Why a retired repository is retired: the .retired file's text, else its README's first lines."""
    marker = path / ".retired"
    if not marker.exists():
        return None
    for candidate in (marker, *sorted(path.glob("README*"))):
        try:
            text = " ".join(line.strip() for line in candidate.read_text(errors="replace").splitlines() if line.strip())
        except OSError:
            continue
        text = text.lstrip("# ").strip()
        if text:
            return text[:300]
    return "it holds only a .retired marker"


def locate(path: Path) -> PackageRepo:
    """The spec and sources of the package repository at ``path`` (ConfigError when they are not one each)."""
    path = path.resolve()
    if not path.is_dir():
        raise ConfigError(
            f"package repository {path} does not exist", hint="pass a checkout of an xcp-ng-rpms repository"
        )
    reason = retired_reason(path)
    if reason is not None:
        raise ConfigError(
            f"package repository {path.name} is retired: {reason}",
            hint="build the package that replaced it, or check out a branch where it is still built",
        )
    specs_dir = path / "SPECS"
    specs = sorted(specs_dir.glob("*.spec")) if specs_dir.is_dir() else sorted(path.glob("*.spec"))
    where = specs_dir if specs_dir.is_dir() else path
    if not specs:
        raise ConfigError(
            f"package repository {path} has no spec (no {where}/*.spec)",
            hint="a package repository holds SPECS/NAME.spec and SOURCES/ (or NAME.spec at its top)",
        )
    if len(specs) > 1:
        raise ConfigError(
            f"package repository {path} has {len(specs)} specs in {where}: {', '.join(s.name for s in specs)}",
            hint="keep one spec per package repository",
        )
    sources = path / "SOURCES" if (path / "SOURCES").is_dir() else path
    return PackageRepo(path=path, spec_path=specs[0], sources_dir=sources)


def parse_lfs_pointer(head: bytes) -> LfsPointer | None:
    """The pointer a git-lfs placeholder holds, or None for a real file (``head``: its first bytes)."""
    if not head.startswith(LFS_HEADER) or len(head) > _LFS_MAX:
        return None
    fields = dict(line.split(" ", 1) for line in head.decode(errors="replace").splitlines() if " " in line)
    oid = fields.get("oid", "").removeprefix("sha256:")
    size = fields.get("size", "")
    if not re.fullmatch(r"[0-9a-f]{64}", oid) or not size.isdigit():
        return None
    return LfsPointer(oid=oid, size=int(size))


def read_lfs_pointer(path: Path) -> LfsPointer | None:
    with path.open("rb") as handle:
        return parse_lfs_pointer(handle.read(_LFS_MAX + 1))


def parse_sources_file(text: str, where: str) -> dict[str, Checksum]:
    """A ``sources`` file: ``SHA512 (name) = hex`` (or ``hex  name``) per line."""
    checksums: dict[str, Checksum] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for pattern in _SOURCES_LINE:
            match = pattern.match(line)
            if match:
                digest = match["digest"].lower()
                algo = (match.groupdict().get("algo") or _ALGO_BY_LENGTH.get(len(digest), "")).lower()
                if algo not in _ALGO_BY_LENGTH.values():
                    raise ConfigError(f"{where}:{number}: unknown checksum type `{algo}`", hint="use SHA512 or SHA256")
                checksums[Path(match["name"]).name] = Checksum(algo, digest)
                break
        else:
            raise ConfigError(f"{where}:{number}: `{line}` is not a checksum line", hint="SHA512 (FILE) = HEX")
    return checksums


def _entry(match: re.Match[str]) -> SpecEntry:
    tag = "Source" if match["tag"].lower() == "source" else "Patch"
    # A URL names the file by its last part, which is what SOURCES/ holds.
    file = match["value"].rstrip("/").rsplit("/", 1)[-1].split("#", 1)[-1]
    return SpecEntry(tag=tag, number=int(match["number"] or 0), file=file)


def spec_facts(expanded: str) -> SpecFacts:
    """The facts of an expanded spec (``rpmspec -P`` output: macros expanded, conditionals resolved)."""
    fields: dict[str, str] = {}
    sources: list[SpecEntry] = []
    patches: list[SpecEntry] = []
    requires: list[str] = []
    for line in expanded.splitlines():
        if line.startswith("%changelog"):
            break
        tag = _TAG.match(line)
        if tag:
            (sources if tag["tag"].lower() == "source" else patches).append(_entry(tag))
            continue
        field = _FIELD.match(line)
        if field and field["tag"].lower() not in fields:
            fields[field["tag"].lower()] = field["value"]
        needs = _BUILD_REQUIRES.match(line)
        if needs:
            requires += [i for i in re.split(r"[,\s]+", needs[1]) if i and not re.match(r"^[<>=]+$|^[\d.:~^-]+$", i)]
    for required in ("name", "version", "release"):
        if required not in fields:
            raise ConfigError(
                f"the spec has no {required.capitalize()}: line", hint="every spec needs Name, Version, Release"
            )
    return SpecFacts(
        name=fields["name"],
        version=fields["version"],
        release=fields["release"],
        epoch=fields.get("epoch"),
        url=fields.get("url"),
        buildarch=fields.get("buildarch"),
        sources=tuple(sources),
        patches=tuple(patches),
        build_requires=tuple(requires),
    )


def spec_upstream(raw: str, expanded: str, facts: SpecFacts) -> Upstream:
    """The upstream for patch health: gitsha(...) Provides (7.x), package_srccommit (8.2+), then URL."""
    for line in expanded.splitlines():
        match = _GITSHA.match(line)
        if match:
            return Upstream(match["url"], match["sha"], "Provides: gitsha(...)")
    commit = _SRCCOMMIT.search(raw)
    if commit and "%" not in commit["ref"]:
        return Upstream(facts.url, commit["ref"], "%global package_srccommit")
    return Upstream(facts.url, None, "URL:")
