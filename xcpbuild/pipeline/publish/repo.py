"""Yum repository trees in XCP-ng layout: channels, generations, the lock, the swap.

Layout: ``ROOT/<major>/<X.Y>/<channel>/x86_64/{Packages,repodata}`` and
``.../<channel>/Source/{SPackages,repodata}``. Each of those two directories is
a *repo dir* with its own metadata.

Atomic swap. ``repodata`` in a repo dir is a relative symlink to
``.generations/<n>/repodata``. A new generation is built completely elsewhere,
checked, then moved to ``.generations/<n>`` and made live by creating a
temporary symlink and ``os.replace``-ing it onto ``repodata``: rename(2) of a
symlink over a symlink is atomic, so a client (or dnf, or nginx following the
link) always sees either the whole old or the whole new ``repomd.xml`` with its
matching ``repomd.xml.asc``, never a gap and never a mix — unlike
createrepo_c's own two-rename swap. ``Packages/`` only ever gains files, and
they arrive (by rename, already signed and verified) before the metadata that
names them, so every live generation's packages exist.

Cached clients. A new generation's ``repodata`` also holds hard links to the
previous generation's metadata files (their names carry their checksums, so
they never collide), so a client holding the previous ``repomd.xml`` still
finds every file it names. Older generations stay on disk for rollback up to
``KEEP_GENERATIONS``, then are pruned.

Crash recovery. Everything a publish builds lives in ``.staging-*`` until the
swap, except the signed packages it has already renamed into ``Packages/``
(which no metadata names yet); a generation numbered above the live one is a
built-but-never-swapped leftover. All three are removed by the next publisher,
under the lock, before it starts. One ``fcntl.flock`` on ``ROOT/.xcpbuild.lock`` serialises publishers.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from xcpbuild.adapters.createrepo import PackageRecord
from xcpbuild.errors import PublishError, UsageError
from xcpbuild.log import get_logger
from xcpbuild.model.repo import check_channel, major_of

log = get_logger("repo")

KEEP_GENERATIONS = 3
LOCK_NAME = ".xcpbuild.lock"
GENERATIONS = ".generations"
STAGING_PREFIX = ".staging-"

# A channel's two repo dirs: binaries in x86_64/Packages, sources in Source/SPackages.
RepoKind = Literal["x86_64", "Source"]
PackagesDir = Literal["Packages", "SPackages"]


@dataclass(frozen=True)
class RepoDir:
    """One directory holding packages and a ``repodata`` link: x86_64/ or Source/."""

    path: Path
    packages: PackagesDir

    @property
    def kind(self) -> RepoKind:
        return "Source" if self.packages == "SPackages" else "x86_64"

    @property
    def packages_dir(self) -> Path:
        return self.path / self.packages

    @property
    def repodata(self) -> Path:
        return self.path / "repodata"

    @property
    def generations(self) -> Path:
        return self.path / GENERATIONS

    def generation_dir(self, number: int) -> Path:
        return self.generations / str(number)


# Kernel-made trees: nothing is published into them (mkdir there fails with misleading errors).
_PSEUDO_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_root(root: Path) -> Path:
    """``root`` if it can hold a repository (it may not exist yet); UsageError otherwise."""
    hint = "point --repo at a directory on a real filesystem (it is created if missing)"
    absolute = root.resolve()
    for pseudo in _PSEUDO_ROOTS:
        if absolute == pseudo or pseudo in absolute.parents:
            raise UsageError(f"repository root {root} is under {pseudo}, which the kernel makes up", hint=hint)
    existing = absolute
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == absolute else f"is inside {existing}, which is a file"
        raise UsageError(f"repository root {root} {what}, not a directory", hint=hint)
    return root


def channel_path(root: Path, release: str, channel: str) -> Path:
    return root / major_of(release) / release / check_channel(channel)


def repo_dirs(root: Path, release: str, channel: str) -> tuple[RepoDir, RepoDir]:
    """(binary x86_64 repo dir, Source repo dir) of a channel."""
    base = channel_path(root, release, channel)
    return RepoDir(base / "x86_64", "Packages"), RepoDir(base / "Source", "SPackages")


@dataclass
class Generation:
    """One built metadata generation of a repo dir, as recorded in ``generation.json``."""

    number: int
    parent: int | None
    action: str
    packages: list[PackageRecord] = field(default_factory=list)
    identity: dict[str, str] = field(default_factory=dict)  # href -> header sha256
    created: float = 0.0

    def hrefs(self) -> list[str]:
        return [p.href for p in self.packages]

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "parent": self.parent,
            "action": self.action,
            "packages": [p.to_json() for p in self.packages],
            "identity": self.identity,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Generation:
        return cls(
            number=int(data["number"]),
            parent=data.get("parent"),
            action=str(data.get("action", "publish")),
            packages=[PackageRecord.from_json(p) for p in data.get("packages", [])],
            identity=dict(data.get("identity", {})),
            created=float(data.get("created", 0.0)),
        )


def current_number(repo: RepoDir) -> int | None:
    """The live generation's number, or None when nothing was published yet."""
    try:
        target = str(repo.repodata.readlink())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PublishError(
            f"{repo.repodata} is not a symlink managed by xcpbuild",
            hint="move the existing repodata/ aside; xcpbuild publishes it again with its own layout",
        ) from exc
    parts = Path(target).parts
    if len(parts) != 3 or parts[0] != GENERATIONS or not parts[1].isdigit():
        raise PublishError(f"{repo.repodata} points at {target}, which is not an xcpbuild generation")
    return int(parts[1])


# Loaded generation records by path and the stat key they were read under. A record is never
# rewritten in place (``write_generation`` renames a new file over it: a new inode), so an
# unchanged key means unchanged content. One publish reads each retained record several times
# (recovery, planning, identities, pruning), and the record it has just written (as its
# generation goes live): 2,000 packages cost ~15 ms a read.
_Key = tuple[Path, int, int, int, int]
_LOADED: collections.OrderedDict[_Key, Generation] = collections.OrderedDict()
_LOADED_MAX = 16


def _key(path: Path) -> _Key:
    st = path.stat()
    return (path, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def remember_generation(directory: Path, generation: Generation) -> None:
    """``generation`` is what ``directory``'s record holds: called where a record this process wrote
    ends up (``write_generation`` writes it in a staging dir that is then renamed)."""
    _remember(_key(directory / "generation.json"), generation)


def _remember(key: _Key, generation: Generation) -> None:
    _LOADED[key] = generation
    _LOADED.move_to_end(key)
    while len(_LOADED) > _LOADED_MAX:
        _LOADED.popitem(last=False)


def load_generation(repo: RepoDir, number: int) -> Generation:
    """The generation record (shared between callers: treat it as read-only)."""
    path = repo.generation_dir(number) / "generation.json"
    try:
        key = _key(path)
        cached = _LOADED.get(key)
        if cached is not None:
            _LOADED.move_to_end(key)
            return cached
        generation = Generation.from_json(json.loads(path.read_bytes()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PublishError(f"{path} is unreadable ({exc})") from exc
    _remember(key, generation)
    return generation


def current_generation(repo: RepoDir) -> Generation | None:
    number = current_number(repo)
    return None if number is None else load_generation(repo, number)


def generation_numbers(repo: RepoDir) -> list[int]:
    if not repo.generations.is_dir():
        return []
    return sorted(int(p.name) for p in repo.generations.iterdir() if p.name.isdigit())


def write_generation(directory: Path, generation: Generation, *, durable: bool = True) -> None:
    """``generation.json`` in ``directory``; ``durable=False`` when a syncfs follows (see ``sync_filesystem``)."""
    path = directory / "generation.json"
    tmp = directory / "generation.json.tmp"
    tmp.write_text(json.dumps(generation.to_json(), separators=(",", ":")))
    if durable:
        fsync_file(tmp)
    tmp.replace(path)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def href_name(href: str) -> str:
    """The file name of an href (``Packages/x.rpm`` -> ``x.rpm``), without building a Path."""
    return href.rpartition("/")[2]


_LIBC = ctypes.CDLL(None, use_errno=True)


def sync_filesystem(path: Path) -> None:
    """Make everything written to ``path``'s filesystem durable: file data, renames, new entries.

    One syncfs(2) instead of an fsync per file and per directory: Linux returns only
    once all the filesystem's dirty data and metadata are on stable storage (with
    the journal committed), so it gives each file what an fsync would, in one commit.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _LIBC.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs of {path}: {os.strerror(code)}")
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename/creation in ``path`` durable before the next step relies on it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the repository lock (``ROOT/.xcpbuild.lock``); waits for another publisher."""
    check_root(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / LOCK_NAME, "a+")  # noqa: SIM115 (closed below, after the mkdir's errors)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UsageError(
            f"cannot create the repository lock in {root}: {exc.strerror}",
            hint="point --repo at a directory you can write to",
        ) from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another publisher holding %s", root / LOCK_NAME)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recover(repo: RepoDir) -> list[str]:
    """Remove what a killed publisher left behind (call with the lock held)."""
    removed: list[str] = []
    if not repo.path.is_dir():
        return removed
    for entry in repo.path.iterdir():
        if entry.name.startswith(STAGING_PREFIX):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        elif entry.name.startswith("repodata.tmp-"):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    live = current_number(repo)
    for number in generation_numbers(repo):
        if live is None or number > live:
            shutil.rmtree(repo.generation_dir(number), ignore_errors=True)
            removed.append(f"{GENERATIONS}/{number}")
    removed += [f"{repo.packages}/{name}" for name in _remove_unswapped_packages(repo, live)]
    for name in removed:
        log.info("removed leftover of an interrupted publish: %s/%s", repo.path, name)
    return removed


def _remove_unswapped_packages(repo: RepoDir, live: int | None) -> list[str]:
    """Packages a killed publisher placed but never made live.

    A package is one of those when no retained generation names it and it is
    newer than the live generation: every package a live generation ever named
    was placed before that generation was made. Older unnamed files are left
    alone (they may predate xcpbuild's management of the directory).
    """
    if not repo.packages_dir.is_dir():
        return []
    named: set[str] = set()
    for number in generation_numbers(repo):
        if generation_dir_ok(repo, number):
            named.update(href_name(href) for href in load_generation(repo, number).hrefs())
    since = load_generation(repo, live).created if live is not None and generation_dir_ok(repo, live) else 0.0
    removed = []
    for entry in repo.packages_dir.iterdir():
        if entry.name not in named and entry.is_file() and entry.stat().st_mtime > since:
            entry.unlink()
            removed.append(entry.name)
    return removed


def swap(repo: RepoDir, number: int) -> None:
    """Make generation ``number`` live with one atomic symlink rename."""
    tmp = repo.path / f"repodata.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(f"{GENERATIONS}/{number}/repodata")
    tmp.replace(repo.repodata)  # rename(2): atomic, even over the old symlink
    fsync_dir(repo.path)


def prune(repo: RepoDir, keep: int = KEEP_GENERATIONS) -> list[int]:
    """Delete generations beyond the newest ``keep`` (never the live one or its parent)."""
    live = current_number(repo)
    if live is None:
        return []
    protected = {live}
    parent = load_generation(repo, live).parent
    if parent is not None:
        protected.add(parent)
    numbers = generation_numbers(repo)
    doomed = [n for n in numbers[:-keep] if n not in protected] if keep > 0 else []
    for number in doomed:
        shutil.rmtree(repo.generation_dir(number), ignore_errors=True)
    return doomed


def link_previous_metadata(previous: Path, new_repodata: Path, names: Sequence[str]) -> int:
    """Hard-link the previous generation's metadata files ``names`` into ``new_repodata``."""
    linked = 0
    for name in names:
        source = previous / name
        target = new_repodata / name
        if target.exists() or not source.is_file():
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        linked += 1
    return linked


def generation_dir_ok(repo: RepoDir, number: int) -> bool:
    return (repo.generation_dir(number) / "generation.json").is_file()
