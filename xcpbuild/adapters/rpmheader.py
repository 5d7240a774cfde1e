"""Reading RPM headers (binary and source packages) with rpmfile, into plain frozen data.

This is the only module that uses rpmfile. Nothing here runs rpm, so it works
on any host and on packages built for another distribution.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rpmfile
import rpmfile.errors

from xcpbuild.errors import RpmError

# RPMSENSE_* comparison bits of dependency flags.
_LESS, _GREATER, _EQUAL = 0x02, 0x04, 0x08


@dataclass(frozen=True)
class RpmFileEntry:
    path: str
    mode: str  # like ``-rwxr-xr-x``
    size: int
    digest: str  # hex digest as the header stores it ("" for directories and links)
    link: str = ""


@dataclass(frozen=True)
class RpmHeader:
    path: Path
    sha256: str
    name: str
    epoch: int | None
    version: str
    release: str
    arch: str
    is_source: bool
    summary: str
    license: str
    requires: tuple[str, ...]
    provides: tuple[str, ...]
    files: tuple[RpmFileEntry, ...]
    sources: tuple[str, ...]
    patches: tuple[str, ...]
    source_rpm: str

    @property
    def nevra(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch else ""
        return f"{self.name}-{epoch}{self.version}-{self.release}.{'src' if self.is_source else self.arch}"

    @property
    def evr(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch else ""
        return f"{epoch}{self.version}-{self.release}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return _text(value[0]) if value else ""
    return str(value)


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value]
    return [_text(value)]


def _ints(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def _dependencies(names: Sequence[str], flags: Sequence[int], versions: Sequence[str]) -> tuple[str, ...]:
    out = []
    for index, name in enumerate(names):
        flag = flags[index] if index < len(flags) else 0
        version = versions[index] if index < len(versions) else ""
        op = ("<" if flag & _LESS else "") + (">" if flag & _GREATER else "") + ("=" if flag & _EQUAL else "")
        out.append(f"{name} {op} {version}" if op and version else name)
    return tuple(out)


def _files(headers: dict[Any, Any]) -> tuple[RpmFileEntry, ...]:
    basenames = _texts(headers.get("basenames"))
    dirnames = _texts(headers.get("dirnames"))
    indexes = _ints(headers.get("dirindexes"))
    modes = _ints(headers.get("filemodes"))
    sizes = _ints(headers.get("longfilesizes")) or _ints(headers.get("filesizes"))
    digests = _texts(headers.get("filemd5s"))
    links = _texts(headers.get("filelinktos"))
    entries = []
    for index, base in enumerate(basenames):
        directory = dirnames[indexes[index]] if index < len(indexes) and indexes[index] < len(dirnames) else ""
        mode = modes[index] & 0xFFFF if index < len(modes) else 0
        entries.append(
            RpmFileEntry(
                path=directory + base,
                mode=stat.filemode(mode),
                size=sizes[index] if index < len(sizes) else 0,
                digest=digests[index] if index < len(digests) else "",
                link=links[index] if index < len(links) else "",
            )
        )
    return tuple(entries)


def read(path: Path) -> RpmHeader:
    """The header of the RPM at ``path`` (RpmError if it is not a readable RPM)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RpmError(f"cannot read {path}: {exc.strerror}") from exc
    if data[:4] != b"\xed\xab\xee\xdb":
        raise RpmError(f"{path} is not an RPM package (no RPM lead)")
    try:
        with rpmfile.open(str(path)) as package:
            headers: dict[Any, Any] = dict(package.headers)
    except (rpmfile.errors.RPMError, AssertionError, ValueError, IndexError, KeyError) as exc:
        raise RpmError(f"{path} has an unreadable RPM header: {exc}") from exc
    epoch = _ints(headers.get("serial"))
    source_rpm = _text(headers.get("sourcerpm"))
    return RpmHeader(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        name=_text(headers.get("name")),
        epoch=epoch[0] if epoch else None,
        version=_text(headers.get("version")),
        release=_text(headers.get("release")),
        arch=_text(headers.get("arch")),
        is_source=not source_rpm,
        summary=_text(headers.get("summary")),
        license=_text(headers.get("copyright")),
        requires=_dependencies(
            _texts(headers.get("requirename")),
            _ints(headers.get("requireflags")),
            _texts(headers.get("requireversion")),
        ),
        provides=_dependencies(
            _texts(headers.get("provides")),
            _ints(headers.get("provideflags")),
            _texts(headers.get("provideversion")),
        ),
        files=_files(headers),
        sources=tuple(_texts(headers.get("source"))),
        patches=tuple(_texts(headers.get("patch"))),
        source_rpm=source_rpm,
    )


def _headers(path: Path) -> dict[Any, Any]:
    try:
        with rpmfile.open(str(path)) as package:
            return dict(package.headers)
    except (OSError, rpmfile.errors.RPMError, AssertionError, ValueError, IndexError, KeyError) as exc:
        raise RpmError(f"{path} has an unreadable RPM header: {exc}") from exc


def reproducibility_fields(path: Path) -> dict[str, object]:
    """What two builds of the same inputs should agree on: header fields, the payload digest, and per file
    its digest, mode, owner, group and time (``files``: path -> those)."""
    headers = _headers(path)
    fields: dict[str, object] = {
        name: _text(headers.get(name)) for name in ("buildhost", "sourcerpm", "payloadcompressor", "optflags")
    }
    fields["buildtime"] = ",".join(str(t) for t in _ints(headers.get("buildtime")))
    fields["payloaddigest"] = ",".join(_texts(headers.get("payloaddigest")))
    users, groups = _texts(headers.get("fileusername")), _texts(headers.get("filegroupname"))
    times = _ints(headers.get("filemtimes"))
    files: dict[str, dict[str, object]] = {}
    for index, entry in enumerate(_files(headers)):
        files[entry.path] = {
            "digest": entry.digest,
            "mode": entry.mode,
            "owner": f"{users[index] if index < len(users) else '?'}:{groups[index] if index < len(groups) else '?'}",
            "mtime": times[index] if index < len(times) else None,
            "size": entry.size,
        }
    fields["files"] = files
    return fields
