"""The disks a server may export: validated at start-up, looked up only by name."""

import errno
import os
import re
import stat
from pathlib import Path
from typing import List, NamedTuple

from xcpbuild.errors import ServerError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Disk(NamedTuple):
    name: str
    path: Path


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
        info = path.stat()
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISBLK(info.st_mode)):
            raise ServerError(f"disk {name}: {path} is not a regular file or block device")
        os.close(os.open(str(path), os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        raise ServerError(f"disk {name}: cannot open {path}: {exc.strerror}") from exc
    return Disk(name, path)


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
