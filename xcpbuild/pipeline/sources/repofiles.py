"""The files a package repository's spec names, made real and checked before anything is built.

A clone without its git-lfs objects holds pointer files instead of tarballs:
each pointer is replaced by the file of the same name in ``--sources DIR``,
whose sha256 must be the pointer's oid, or the build stops naming the file, oid
and size. A ``sources`` checksum file, where the branch has one, is checked the
same way. The files are copied into the staging directory; the repository is
never changed.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.errors import SourceError
from xcpbuild.model.pkgrepo import Checksum, parse_sources_file, read_lfs_pointer
from xcpbuild.pipeline.sources.package import RepoPackage

SOURCES_FILE = "sources"


@dataclass(frozen=True)
class StagedFile:
    name: str
    path: Path  # the copy in the staging directory
    sha256: str
    role: str  # "source" or "patch"
    supplied: bool  # taken from --sources DIR instead of the repository


def digest(path: Path, algo: str = "sha256") -> str:
    hasher = hashlib.new(algo)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _checksums(package: RepoPackage) -> dict[str, Checksum]:
    for candidate in (package.repo.path / SOURCES_FILE, package.repo.sources_dir / SOURCES_FILE):
        if candidate.is_file():
            return parse_sources_file(candidate.read_text(errors="replace"), str(candidate))
    return {}


def _real_file(package: RepoPackage, path: Path, supplied_dir: Path | None) -> tuple[Path, bool]:
    pointer = read_lfs_pointer(path)
    if pointer is None:
        return path, False
    rel = path.relative_to(package.repo.path)
    if supplied_dir is None or not (supplied_dir / path.name).is_file():
        looked = f" ({supplied_dir / path.name} does not exist)" if supplied_dir is not None else ""
        raise SourceError(
            f"{rel} is a git-lfs pointer (oid sha256:{pointer.oid}, {pointer.size} bytes), not the file{looked}",
            hint=f"run `git lfs pull` in {package.repo.path}, or pass --sources DIR holding {path.name} "
            f"(its sha256 must be the pointer's oid)",
        )
    real = supplied_dir / path.name
    found = digest(real)
    if found != pointer.oid:
        raise SourceError(
            f"{real} has sha256 {found}, but the git-lfs pointer {rel} names oid {pointer.oid}",
            hint=f"supply the file the pointer names ({pointer.size} bytes), or `git lfs pull` in {package.repo.path}",
        )
    return real, True


def stage_files(package: RepoPackage, into: Path, *, supplied_dir: Path | None = None) -> list[StagedFile]:
    """Copy every SourceN/PatchN file into ``into``, with LFS pointers replaced and checksums checked."""
    checksums = _checksums(package)
    into.mkdir(parents=True, exist_ok=True)
    staged: list[StagedFile] = []
    seen: set[str] = set()
    roles = [(p, "source") for p in package.source_files] + [(p, "patch") for p in package.patch_files]
    for path, role in roles:
        if path.name in seen:
            continue
        seen.add(path.name)
        real, supplied = _real_file(package, path, supplied_dir)
        wanted = checksums.get(path.name)
        if wanted is not None:
            found = digest(real, wanted.algo)
            if found != wanted.digest:
                raise SourceError(
                    f"{real.name} has {wanted.algo} {found}, but the `sources` file of "
                    f"{package.repo.path.name} says {wanted.digest}",
                    hint="fetch the right file (`git lfs pull`, or --sources DIR), or fix the `sources` file",
                )
        copy = into / path.name
        shutil.copy2(real, copy)
        staged.append(StagedFile(path.name, copy, digest(copy), role, supplied))
    return staged
