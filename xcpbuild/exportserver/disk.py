"""The disks a server may export: validated at start-up, looked up only by name."""

import errno
import fcntl
import os
import re
import stat
from pathlib import Path
from typing import List, NamedTuple, Tuple

from xcpbuild.errors import ServerError
from xcpbuild.exportserver.request import HttpError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Disk(NamedTuple):
    name: str
    path: Path
    size: int  # at start-up; a disk that changes size is no longer the configured one


class DiskChanged(Exception):
    """The disk's size or mtime changed during an export: the bytes sent may be torn."""


# O_NONBLOCK: opening a FIFO put in the disk's place must not wait for a writer.
# O_NOFOLLOW: the path was resolved at start-up, so a symlink there now was put there since.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK | os.O_NOFOLLOW


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def parse_disk(text: str) -> Disk:
    """``NAME=PATH`` -> a readable regular file or block device; ServerError otherwise."""
    name, sep, path_text = text.partition("=")
    if not sep or not name or not path_text:
        raise ServerError(f"--disk {text!r} is not NAME=PATH", hint="e.g. --disk vdi1=/srv/disks/vdi1.raw")
    if not _NAME.match(name):
        raise ServerError(
            f"disk name {name!r} is not allowed",
            hint="use letters, digits, '.', '_' and '-' (it becomes the vdi= value and the file name)",
        )
    path = Path(path_text).resolve()
    try:
        fd = os.open(str(path), _OPEN_FLAGS)
    except OSError as exc:
        raise ServerError(f"disk {name}: cannot open {path}: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            raise ServerError(f"disk {name}: {path} is {_kind(mode)}, not a regular file or block device")
        return Disk(name, path, disk_size(fd))
    finally:
        os.close(fd)


def open_disk(disk: Disk) -> int:
    """A read-only fd of ``disk``, checked to still be what was configured; HttpError otherwise.

    The file may have been deleted, replaced by a FIFO or a directory, or resized since
    start-up: each is refused with a reason (404 when it is gone, 500 otherwise) instead
    of blocking in open(2) or serving a bogus length.
    """
    try:
        fd = os.open(str(disk.path), _OPEN_FLAGS)
    except FileNotFoundError:
        raise HttpError(404, f"disk {disk.name} is gone (its file was removed)") from None
    except OSError as exc:
        raise HttpError(500, f"disk {disk.name} cannot be opened: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            raise HttpError(500, f"disk {disk.name} is now {_kind(mode)}, not a regular file or block device")
        size = disk_size(fd)
        if size != disk.size:
            raise HttpError(500, f"disk {disk.name} changed size since start-up ({disk.size} -> {size} bytes)")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


class DiskWatch:
    """Notices an export's disk changing under it (an in-place overwrite or a resize).

    Compared before each chunk: size and mtime (ns) of the open file, and its length by
    lseek (a block device's st_size is 0). A write within the filesystem's timestamp
    granularity of the first look can go unseen; anything later is caught.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._before = self._look()

    def _look(self) -> Tuple[int, int]:
        return disk_size(self._fd), os.fstat(self._fd).st_mtime_ns

    def check(self) -> None:
        (size, mtime), (now_size, now_mtime) = self._before, self._look()
        if now_size != size:
            raise DiskChanged(f"the disk changed size during the export ({size} -> {now_size} bytes)")
        if now_mtime != mtime:
            raise DiskChanged("the disk was written to during the export (its mtime changed)")


def disk_size(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_END)


def allocated_blocks(fd: int, size: int, block_size: int) -> List[int]:
    """Indices of the blocks that hold data, found with SEEK_DATA as vhd-tool does (all, if unsupported)."""
    blocks: List[int] = []
    pos = 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data past pos
                break
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return list(range(-(-size // block_size)))
            raise
        if data >= size:
            break
        index = data // block_size
        blocks.append(index)
        pos = (index + 1) * block_size
    return blocks
