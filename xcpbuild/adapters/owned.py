"""Temporary things a run owns, and sweeping what runs that died left behind.

Every temporary directory xcpbuild makes is named after its owner:
``PREFIX.PID-START.N``, where START is the owner's start time in seconds since
boot (``/proc/PID/stat``), so a reused pid never passes for the dead owner.
They live under the cache's ``tmp/`` (or beside what they replace, when a rename
must stay on one filesystem, as builds' ``.staging``). Removing one also stops any
gpg-agent a GnuPG home inside it started and detaches any mount left inside it
(mmdebstrap mounts /proc), so nothing outlives it and nothing beyond it is
touched. The first use of a directory in a run sweeps that directory's entries
whose owner is gone: a SIGKILLed run is cleaned up by the next one.

Containers carry the same owner as a label (``host/PID-START``); the container
adapter removes those whose owner on this host is gone.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from xcpbuild import config
from xcpbuild.adapters import process
from xcpbuild.log import get_logger

log = get_logger("owned")

_NAME = re.compile(r"(?P<prefix>.+)\.(?P<pid>\d+)-(?P<start>\d+)\.(?P<n>\d+)")
_LABEL = re.compile(r"(?P<host>[^/]+)/(?P<pid>\d+)-(?P<start>\d+)")
# Files that make a directory a GnuPG home whose agent may be running.
# A process that exists but whose start time cannot be read: never taken for a dead owner.
_UNREADABLE = -1
_GNUPG_MARKERS = ("S.gpg-agent", "pubring.kbx", "pubring.gpg", "private-keys-v1.d", "trustdb.gpg")


@dataclass(frozen=True)
class Owner:
    """A process on a host, told apart from a later one with the same pid by its start time."""

    host: str
    pid: int
    start: int

    @property
    def token(self) -> str:
        return f"{self.pid}-{self.start}"

    @property
    def label(self) -> str:
        return f"{self.host}/{self.token}"

    def is_gone(self) -> bool:
        """True only when the owner is surely dead: on this host, and its pid is free or someone else's."""
        if self.host != this_host():
            return False
        started = start_of(self.pid)
        return started not in (self.start, _UNREADABLE)

    @classmethod
    def from_label(cls, label: str) -> Owner | None:
        match = _LABEL.fullmatch(label)
        if match is None:
            return None
        return cls(match["host"], int(match["pid"]), int(match["start"]))


def this_host() -> str:
    return socket.gethostname()


def start_of(pid: int) -> int | None:
    """When process ``pid`` started, in whole seconds since boot (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return _UNREADABLE
    # Field 22 (starttime, in clock ticks); the command name before ')' may contain spaces.
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return ticks // os.sysconf("SC_CLK_TCK")


@cache
def me() -> Owner:
    start = start_of(os.getpid())
    assert start is not None
    return Owner(this_host(), os.getpid(), start)


# -- where temporary directories go ---------------------------------------------------------
@dataclass
class _Run:
    """This process's state: where temporary directories go and which folders it already swept."""

    root: Path | None = None
    done: set[object] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: Iterator[int] = field(default_factory=itertools.count)


_run = _Run()


def use_root(path: Path) -> None:
    """Make temporary directories under ``path`` (the CLI passes its settings' cache ``tmp/``)."""
    _run.root = path


def first_time(key: object) -> bool:
    """True the first time this run asks about ``key`` (a sweep is done once per run and place)."""
    with _run.lock:
        if key in _run.done:
            return False
        _run.done.add(key)
        return True


def root() -> Path:
    """Where temporary directories go: the configured root, else the default cache's ``tmp/``."""
    return _run.root if _run.root is not None else config.default_cache_dir() / "tmp"


@contextmanager
def tempdir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A fresh directory owned by this run, removed (with what it started) when the block ends.

    The first use in a run of ``root()`` sweeps every leftover of a dead owner there
    (it holds only ours); the first use of another ``parent`` with ``prefix`` sweeps
    that prefix's leftovers (the folder holds other things too).
    """
    base = parent if parent is not None else root()
    base.mkdir(parents=True, exist_ok=True)
    only = prefix if parent is not None else None
    if first_time(("dir", base, only)):
        sweep(base, only)
    path: Path | None = None
    try:
        # Held back while the directory is made and removed: Ctrl-C or SIGTERM landing between
        # mkdir and the yield, or half-way through the removal, would leave it behind.
        with process.signals_deferred():
            path = _make(base, prefix)
        yield path
    finally:
        if path is not None:
            with process.signals_deferred():
                remove(path)


@contextmanager
def scratch_file(prefix: str, parent: Path) -> Iterator[Path]:
    """A new empty file in ``parent`` owned by this run (for write-then-rename); gone at the end unless renamed."""
    parent.mkdir(parents=True, exist_ok=True)
    if first_time(("dir", parent, prefix)):
        sweep(parent, prefix)
    path: Path | None = None
    try:
        with process.signals_deferred():  # as in tempdir: no file made but never handed over
            path = _make(parent, prefix, directory=False)
        yield path
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


def _make(base: Path, prefix: str, *, directory: bool = True) -> Path:
    while True:
        path = base / f"{prefix}.{me().token}.{next(_run.counter)}"
        try:
            if directory:
                path.mkdir(mode=0o700)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return path
        except FileExistsError:
            continue


def owner_of(path: Path, prefix: str | None = None) -> Owner | None:
    """The owner a directory's name records (None: not one of ours, or another prefix)."""
    match = _NAME.fullmatch(path.name)
    if match is None or (prefix is not None and match["prefix"] != prefix):
        return None
    return Owner(this_host(), int(match["pid"]), int(match["start"]))


def sweep(base: Path, prefix: str | None = None) -> list[Path]:
    """Remove the entries of ``base`` (with ``prefix``, or any) whose owner is gone; return them."""
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        owner = owner_of(entry, prefix)
        if owner is None or not owner.is_gone():
            continue
        log.info("removing %s, left by process %d that is gone", entry, owner.pid)
        remove(entry)
        removed.append(entry)
    return removed


def remove(path: Path) -> None:
    """Remove an owned directory: stop its gpg-agents, detach mounts inside it, then delete it."""
    if not path.exists():
        return
    if path.is_dir() and not path.is_symlink():
        stop_gpg_agents(path)
        if not _detach_mounts(path):
            log.warning("left %s in place: something is still mounted inside it", path)
            return
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def stop_gpg_agents(tree: Path) -> None:
    """Stop the gpg-agent of every GnuPG home in ``tree`` (gpg starts one per home, as a daemon)."""
    gpgconf = process.which("gpgconf")
    homes = _gnupg_homes(tree)
    if gpgconf is None or not homes:
        return
    running = _agent_homes()
    for home in homes:
        if {str(home), str(home.resolve())} & running:
            process.run([gpgconf, "--homedir", home, "--kill", "gpg-agent"], check=False, timeout=30)


def _agent_homes() -> set[str]:
    """The ``--homedir`` of each running gpg-agent.

    gpg starts the agent of a home other than the default one with ``--homedir``
    and the home's absolute name, so a home no agent names has none to stop: reading
    /proc spares a gpgconf run (20-30 ms) per keyring a check only read.
    """
    homes: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if argv and argv[0].rsplit(b"/", 1)[-1] == b"gpg-agent":
            for flag, value in itertools.pairwise(argv):
                if flag == b"--homedir":
                    homes.add(os.fsdecode(value))
    return homes


def _gnupg_homes(tree: Path) -> list[Path]:
    homes = []
    for current, dirs, files in os.walk(tree):
        if any(marker in files or marker in dirs for marker in _GNUPG_MARKERS):
            homes.append(Path(current))
        dirs[:] = [d for d in dirs if not Path(current, d).is_mount()]
    return homes


def _mounts_under(tree: Path) -> list[Path]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    inside = []
    prefix = str(tree.resolve()) + "/"
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
            if point.startswith(prefix):
                inside.append(Path(point))
    return sorted(inside, key=lambda p: len(p.parts), reverse=True)


def _detach_mounts(tree: Path) -> bool:
    """Lazily unmount what is mounted inside ``tree``; False when something could not be."""
    mounts = _mounts_under(tree)
    if not mounts:
        return True
    umount = process.which("umount")
    for point in mounts:
        if umount is not None:
            process.run([umount, "--lazy", point], check=False, timeout=60)
    return not _mounts_under(tree)
