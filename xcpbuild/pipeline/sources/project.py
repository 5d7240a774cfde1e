"""Source tarballs made from this project's own files (``source_kind = "project"``).

The tarball is reproducible: members sorted, one fixed mtime, owner root, modes
normalised to 0644/0755, gzip header without name or time. The same files
always give the same sha256, which is what the build cache keys on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError
from xcpbuild.model.package import PackageDef

# 2018-08-16, the day XCP-ng 7.5 shipped the vhd-tool fix: any fixed value works.
FIXED_MTIME = 1534377600
_SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


@dataclass(frozen=True)
class ProjectSource:
    """Same shape as pipeline.source's FetchedSource, so builds treat both alike."""

    package: str
    version: str
    ref: str
    commit: str | None
    tarball: Path
    sha256: str


def project_files(root: Path, paths: tuple[str, ...]) -> list[Path]:
    """The files under each listed path, relative to ``root``, sorted; caches and bytecode left out."""
    found: set[Path] = set()
    for entry in paths:
        path = root / entry
        if path.is_file():
            found.add(path.relative_to(root))
        elif path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
                for filename in filenames:
                    if not filename.endswith((".pyc", ".pyo")):
                        found.add((Path(dirpath) / filename).relative_to(root))
        else:
            raise ConfigError(f"project path `{entry}` does not exist under {root}", hint="fix project_paths")
    return sorted(found, key=lambda p: p.as_posix())


def make_tarball(root: Path, paths: tuple[str, ...], prefix: str, out: Path) -> str:
    """Write ``out`` (a .tar.gz with every file under ``prefix/``) and return its sha256."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories: set[str] = set()
        for rel in project_files(root, paths):
            parts = rel.parts[:-1]
            for depth in range(len(parts) + 1):
                directory = "/".join((prefix, *parts[:depth]))
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
                    tar.addfile(info)
            source = root / rel
            data = source.read_bytes()
            info = tarfile.TarInfo(f"{prefix}/{rel.as_posix()}")
            info.size = len(data)
            info.mode = 0o755 if os.access(source, os.X_OK) else 0o644
            info.mtime = FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
        gz.write(raw.getvalue())
    blob = compressed.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_bytes(blob)
    partial.replace(out)
    return hashlib.sha256(blob).hexdigest()


def fetch(settings: Settings, package: PackageDef, target: str, out_dir: Path) -> ProjectSource:
    """Make the package's tarball from the project tree into ``out_dir``."""
    if package.source_kind != "project" or not package.project_paths:
        raise ConfigError(f"package {package.name} is not made from project files (no project_paths)")
    pin = package.pin(target)
    tarball = out_dir / package.tarball_name(pin.version)
    sha = make_tarball(settings.project_root, package.project_paths, f"{package.name}-{pin.version}", tarball)
    return ProjectSource(package.name, pin.version, pin.ref, None, tarball, sha)
