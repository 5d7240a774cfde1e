"""A full disk during a publish becomes one DiskFullError naming the filesystem, the step and the space needed.

Filesystems fill up in whichever tool writes next: Python's own copies and
writes (``OSError`` ENOSPC), createrepo_c (a ``gzclose()`` error with no
errno), rpmsign or gpg (a failed command whose words vary). ``guard`` turns
any of these into the same error: by errno or the words "No space left"
anywhere in the exception's chain, or, for a tool that said neither, by
finding a watched filesystem (nearly) full at the moment of the failure, that
is before the publish's clean-up frees what it wrote.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from xcpbuild.errors import DiskFullError
from xcpbuild.log import get_logger, step_of

log = get_logger("publish")

MiB = 1024 * 1024
# A filesystem with less than this free counts as full when a tool failed without saying why.
NEARLY_FULL = MiB
_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_WORDS = ("no space left", "disk quota exceeded", "disk full")
# "while ..." for the publish's step names (log.step), by their first word.
_GERUNDS = {
    "read": "reading",
    "stage": "staging",
    "sign": "signing",
    "verify": "verifying",
    "metadata": "building metadata for",
    "dnf": "checking with dnf:",
    "swap": "swapping in",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _says_full(exc: BaseException) -> list[Path] | None:
    """The files an ENOSPC names (maybe none) when the chain says "full", else None."""
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno in _ERRNOS:
            # Both names: shutil's copies put the source in filename and the full target in filename2.
            names = (item.filename, item.filename2)
            return [Path(os.fsdecode(name)) for name in names if isinstance(name, str | bytes)]
        if any(words in str(item).lower() for words in _WORDS):
            return []
    return None


def free_bytes(path: Path) -> int:
    existing = _existing(path)
    info = os.statvfs(existing)
    return info.f_bavail * info.f_frsize


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def describe(path: Path) -> str:
    """``MOUNTPOINT (FSTYPE SOURCE)`` of the filesystem holding ``path``."""
    current = _existing(path).resolve()
    device = current.stat().st_dev
    while current != current.parent and current.parent.stat().st_dev == device:
        current = current.parent
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[1].replace("\\040", " ") == str(current):
                return f"{current} ({fields[2]} {fields[0]})"
    except OSError:
        pass
    return str(current)


def _what(step: str | None) -> str:
    if not step:
        return "publishing"
    first, _, rest = step.partition(" ")
    gerund = _GERUNDS.get(first)
    return f"{gerund} {rest}" if gerund else step


@contextlib.contextmanager
def guard(watched: Sequence[Path], needed: int) -> Iterator[None]:
    """Raise DiskFullError for a full disk in the body; ``needed`` is the publish's estimate in bytes."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        named = _says_full(exc)
        if named is None:  # a tool failed without saying why: was a disk full at that moment?
            if all(free_bytes(path) >= NEARLY_FULL for path in watched):
                raise
            named = []
        where = min([*named, *watched], key=free_bytes)
        message = (
            f"no space left on {describe(where)} while {_what(step_of(exc))}; "
            f"{-(-needed // MiB)} MiB needed, {free_bytes(where) // MiB} MiB free"
        )
        log.debug("full disk: %s", exc)
        raise DiskFullError(message) from exc


def estimate(rpms: Sequence[Path], repodata: Sequence[Path]) -> int:
    """Bytes a publish may need at its peak: each RPM twice (the staged copy and rpmsign's
    rewrite of it, when rpmsign signs; rpmsig writes each signed copy once), the live metadata
    once more (the new generation), and 1 MiB to spare."""
    total = MiB + 2 * sum(path.stat().st_size for path in rpms)
    for directory in repodata:
        if directory.is_dir():
            total += sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    return total
