"""All use of the createrepo_c Python bindings: read RPM headers, write and read repodata.

Metadata is gz-compressed XML (primary, filelists, other) with checksum-prefixed
("unique") file names, so EL7 yum on XCP-ng 7.x/8.x hosts reads it; no sqlite
databases are written by default, as yum builds its own cache from the XML
when repomd names none (the createrepo_c CLI equivalent is ``--no-database
--general-compress-type=gz``). ``sqlite=True`` adds bz2-compressed
``*_db`` databases as classic createrepo made them, which spares EL7 clients
that step.

Reuse: a package whose file is unchanged since the previous generation keeps
its previous metadata instead of being re-read. "Unchanged" is the stat key
(path, size, mtime_ns, inode) plus the checksum type, never size alone:
re-signing an RPM keeps its size but changes its bytes, and a file put in
place by rename (as publish and rpmsign do) gets a new inode and mtime. ctime
is deliberately not part of the key: dnf/librepo cache checksums in extended
attributes of local packages, which bumps ctime on every client read.

Reading is split between this process and forked readers, one per core beyond
it (the bindings hold the GIL while they read, so threads cannot share the
work). Each reader gets a contiguous slice of the packages to read and sends
back, in one message (marshal over a pipe), their record fields and XML. This
process reads the first packages itself; its share is set so that it reaches
the readers' first package about when they are done.

- A full generation (nothing reused): each reader also compresses its slice's
  XML (``cr.xml_dump``, what ``add_pkg`` writes) into one sync-flushed deflate
  segment per file, and each file is a single gzip member of this process's
  segment, the readers' and a last one (``gzmember``), inside the header and
  footer createrepo_c's own writers make.
- Otherwise the readers send the XML chunks and this process feeds createrepo_c's
  writers in order: the reused packages and its own (``add_pkg``), the readers'
  chunks in their place (``add_chunk``).

- A few packages added to a generation whose records are given
  (``previous_records``, as publish does): the others' XML is cut out of the
  previous files as it is (no parsing back into package objects, no dump), only
  the new packages are read, and each file is compressed in one go.

Every way the uncompressed XML is byte for byte what one process writes. Below
``PARALLEL_MIN`` packages to read (adding a few RPMs to a repo) a fork costs
more than it saves, and everything is read here; so is ``sqlite=True``, whose
databases need every package object. A reader that fails reports the error
(RpmError, PublishError), one that dies is a PublishError; every reader is
reaped (killed first if its message was not read), a fork that fails means
reading here, and the XML files are removed when writing did not finish.
Measured in benchmarks/README.md.
"""

from __future__ import annotations

import gzip
import hashlib
import marshal
import os
import signal
import stat
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from xml.sax.saxutils import escape as xml_escape

import createrepo_c as cr

from xcpbuild.adapters import gzmember
from xcpbuild.errors import PublishError, RpmError
from xcpbuild.log import get_logger

log = get_logger("createrepo")

CHECKSUM = "sha256"
_SQLITE_DB_VERSION = 10  # the schema version createrepo_c's sqlite databases carry (db_info.dbversion)
_METADATA_TYPES = ("primary", "filelists", "other")
_XML_WRITERS = (cr.PrimaryXmlFile, cr.FilelistsXmlFile, cr.OtherXmlFile)  # in _METADATA_TYPES' order

StatKey = tuple[int, int, int]  # size, mtime_ns, inode


@dataclass(frozen=True)
class PackageRecord:
    """What a repo says about one package (plus the stat key its metadata was made from)."""

    href: str
    name: str
    epoch: str
    version: str
    release: str
    arch: str
    pkgid: str
    size: int
    stat: StatKey

    @property
    def nevra(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch not in ("", "0") else ""
        return f"{self.name}-{epoch}{self.version}-{self.release}.{self.arch}"

    def to_json(self) -> dict[str, Any]:
        return {
            "href": self.href,
            "name": self.name,
            "epoch": self.epoch,
            "version": self.version,
            "release": self.release,
            "arch": self.arch,
            "pkgid": self.pkgid,
            "size": self.size,
            "stat": list(self.stat),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PackageRecord:
        """The record as ``to_json`` wrote it; a missing or odd stat key reads as (0, 0, 0): never reused."""
        raw = data.get("stat")
        stat: StatKey = (0, 0, 0)
        if isinstance(raw, list) and len(raw) == 3:
            stat = (int(raw[0]), int(raw[1]), int(raw[2]))
        return cls(
            href=str(data["href"]),
            name=str(data["name"]),
            epoch=str(data.get("epoch") or "0"),
            version=str(data["version"]),
            release=str(data["release"]),
            arch=str(data["arch"]),
            pkgid=str(data.get("pkgid", "")),
            size=int(data.get("size", 0)),
            stat=stat,
        )


@dataclass(frozen=True)
class RepodataResult:
    packages: list[PackageRecord]
    metadata_files: list[str]
    read: int
    reused: int


@dataclass(frozen=True)
class RepomdEntry:
    type: str
    href: str
    checksum: str
    checksum_type: str
    size: int


def stat_key(path: Path | str) -> StatKey:
    st = os.stat(path)  # noqa: PTH116 (str paths: hot loop)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _record(pkg: cr.Package, stat: StatKey) -> PackageRecord:
    return PackageRecord(
        href=pkg.location_href,
        name=pkg.name,
        epoch=pkg.epoch or "0",
        version=pkg.version,
        release=pkg.release,
        arch=pkg.arch,
        pkgid=pkg.pkgId,
        size=int(pkg.size_package),
        stat=stat,
    )


def _load(path: Path | str, href: str) -> cr.Package:
    try:
        return cr.package_from_rpm(str(path), cr.SHA256, href, None, 10)
    except (OSError, cr.CreaterepoCError) as exc:
        if not os.path.lexists(path):
            raise PublishError(f"{path} vanished while building metadata") from exc
        raise RpmError(f"{Path(path).name} is not a readable RPM package ({exc})") from exc


def read_package(path: Path, href: str | None = None) -> PackageRecord:
    """Read one RPM's header and checksum (RpmError if it is not an RPM)."""
    return _record(_load(path, href or path.name), stat_key(path))


def _previous_packages(previous: Path | None) -> dict[str, cr.Package]:
    if previous is None or not (previous / "repomd.xml").is_file():
        return {}
    metadata = cr.Metadata(cr.HT_KEY_HASH)
    try:
        metadata.locate_and_load_xml(str(previous.parent))
    except (OSError, cr.CreaterepoCError) as exc:
        log.warning("previous metadata in %s is unreadable, reading every package again (%s)", previous, exc)
        return {}
    by_href: dict[str, cr.Package] = {}
    for key in metadata.keys():  # noqa: SIM118 (a createrepo_c Metadata, not a dict)
        pkg = metadata.get(key)
        by_href[pkg.location_href] = pkg
    return by_href


def build_repodata(
    repo_dir: Path,
    hrefs: Sequence[str],
    out_dir: Path,
    *,
    previous: Path | None = None,
    previous_stats: Mapping[str, StatKey] | None = None,
    previous_records: Sequence[PackageRecord] | None = None,
    sqlite: bool = False,
    workers: int | None = None,
) -> RepodataResult:
    """Write repodata for ``hrefs`` (paths relative to ``repo_dir``) into ``out_dir``.

    ``previous`` is the last generation's repodata directory and ``previous_stats``
    the stat keys its packages were read at; matching packages are reused.
    ``previous_records``, that generation's records in its order (instead of
    ``previous_stats``), lets a few new packages reuse the others' XML as it is
    (``_build_from_text``). ``workers`` is the number of forked readers (None: one
    per core beyond this process when at least ``PARALLEL_MIN`` packages must be
    read; 0: read here). ``sqlite=True`` always reads here: the databases need
    every package object.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if previous_records is not None:
        previous_stats = {record.href: record.stat for record in previous_records}
        if not sqlite and previous is not None and workers in (None, 0):
            done = _build_from_text(repo_dir, sorted(hrefs), out_dir, previous, previous_records)
            if done is not None:
                return done
    old = _previous_packages(previous) if previous_stats else {}
    stats = previous_stats or {}
    ordered = sorted(hrefs)
    base = str(repo_dir)
    paths: list[str] = []
    keys: list[StatKey] = []
    reused: list[cr.Package | None] = []
    for href in ordered:
        path = os.path.join(base, href)  # noqa: PTH118 (plain strings: this loop runs once per package)
        try:
            current = stat_key(path)
        except OSError as exc:
            raise PublishError(f"{path} vanished while building metadata") from exc
        pkg = old.get(href)
        if pkg is not None and (stats.get(href) != current or pkg.checksum_type != CHECKSUM):
            pkg = None
        paths.append(path)
        keys.append(current)
        reused.append(pkg)
    to_read = [index for index, pkg in enumerate(reused) if pkg is None]
    count = _worker_count(len(to_read)) if workers is None else max(0, workers)
    if sqlite or count == 0:
        packages = [
            pkg if pkg is not None else _load(path, href)
            for pkg, path, href in zip(reused, paths, ordered, strict=True)
        ]
        records = [_record(pkg, key) for pkg, key in zip(packages, keys, strict=True)]
        with _XmlFiles(out_dir, len(packages)) as xml:
            for pkg in packages:
                xml.add_pkg(pkg)
        files = _finish(out_dir, packages if sqlite else None)
    else:
        records = _build_parallel(out_dir, _Tree(ordered, paths, keys, reused, to_read), count)
        files = _finish(out_dir, None)
    return RepodataResult(records, files, read=len(to_read), reused=len(ordered) - len(to_read))


def _previous_chunks(previous: Path, records: Sequence[PackageRecord]) -> list[tuple[str, str, str]] | None:
    """Each previous package's primary, filelists and other XML as the previous files hold it, in
    ``records``' order; None unless the files are exactly those packages' metadata, in that order."""
    try:
        files = {Path(entry.href).name: entry.type for entry in read_repomd(previous)}
        texts: dict[str, str] = {}
        for name, kind in files.items():
            if kind in _METADATA_TYPES:
                texts[kind] = gzip.decompress((previous / name).read_bytes()).decode("utf-8")
    except (OSError, PublishError, EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError):
        return None
    if set(texts) != set(_METADATA_TYPES):
        return None
    columns = []
    for kind in _METADATA_TYPES:
        text = texts[kind]
        start, end = text.find("<package"), text.rfind("</package>\n")
        pieces = text[start : end + len("</package>\n")].split("</package>\n")[:-1] if start >= 0 else []
        if len(pieces) != len(records):
            return None
        columns.append([f"{piece}</package>\n" for piece in pieces])
    chunks = list(zip(*columns, strict=True))
    for record, (primary, filelists, other) in zip(records, chunks, strict=True):
        opening = f'<package pkgid="{record.pkgid}" '  # how filelists and other open a package
        if (
            f'<location href="{xml_escape(record.href, {chr(34): "&quot;"})}"' not in primary
            or f'<checksum type="{CHECKSUM}" pkgid="YES">{record.pkgid}</checksum>' not in primary
            or not filelists.startswith(opening)
            or not other.startswith(opening)
        ):
            return None
    return chunks


def _build_from_text(
    repo_dir: Path, ordered: list[str], out_dir: Path, previous: Path, records: Sequence[PackageRecord]
) -> RepodataResult | None:
    """A few packages added to many: the unchanged packages' XML taken from the previous files as
    it is, only the new ones read and dumped (``cr.xml_dump``, what ``add_pkg`` writes), each file
    compressed in one go; the uncompressed XML is what a full rewrite writes. None (nothing written)
    when more than ``PARALLEL_MIN`` must be read or the previous files do not hold those records."""
    by_href = {record.href: index for index, record in enumerate(records)}
    keys = [stat_key(os.path.join(repo_dir, href)) for href in ordered]  # noqa: PTH118 (hot loop)
    fresh = [i for i, href in enumerate(ordered) if href not in by_href or records[by_href[href]].stat != keys[i]]
    if len(fresh) >= PARALLEL_MIN or len(fresh) == len(ordered):
        return None
    chunks = _previous_chunks(previous, records)
    if chunks is None:
        return None
    frames = _xml_frames(out_dir, len(ordered))
    texts: list[list[str]] = [[header] for header, _ in frames]
    result: list[PackageRecord] = []
    fresh_set = set(fresh)
    for index, href in enumerate(ordered):
        if index in fresh_set:
            pkg = _load(os.path.join(repo_dir, href), href)  # noqa: PTH118
            parts = cr.xml_dump(pkg)
            result.append(_record(pkg, keys[index]))
        else:
            parts = chunks[by_href[href]]
            result.append(records[by_href[href]])
        for column, part in zip(texts, parts, strict=True):
            column.append(part)
    members = [
        [gzmember.segment(("".join(column) + footer).encode(), last=True)]
        for column, (_, footer) in zip(texts, frames, strict=True)
    ]
    _write_members(out_dir, members)
    return RepodataResult(result, _finish(out_dir, None), read=len(fresh), reused=len(ordered) - len(fresh))


# Below this many packages to read, forking a reader costs more than it saves
# (measured on 2 cores: see benchmarks/README.md, "Publishing").
PARALLEL_MIN = 150
_MAX_WORKERS = 7
# Relative cost per package of reading it (header + sha256), dumping its XML and
# compressing that XML, measured on the 2,000-RPM benchmark (0.10, 0.035, 0.02 ms).
_READ, _DUMP, _COMPRESS = 1.0, 0.35, 0.2


def _worker_count(to_read: int) -> int:
    if to_read < PARALLEL_MIN:
        return 0
    return max(0, min(len(os.sched_getaffinity(0)) - 1, _MAX_WORKERS))


def _own_share(to_read: int, reused: int, workers: int, *, readers_compress: bool = False) -> int:
    """How many of the packages to read this process reads itself (the first ones in order).

    It dumps and compresses every package the readers do not, so it takes the share
    that makes it reach the readers' first package when they are done with theirs."""
    per_worker = (_READ + _DUMP + (_COMPRESS if readers_compress else 0)) / workers
    own = (to_read * per_worker - reused * (_DUMP + _COMPRESS)) / (_READ + _DUMP + _COMPRESS + per_worker)
    return max(0, min(to_read, int(own)))


class _XmlFiles:
    """The three gz XML writers, fed in package order; their files are removed unless closed cleanly."""

    def __init__(self, out_dir: Path, count: int) -> None:
        self.paths = [out_dir / f"{kind}.xml.gz" for kind in _METADATA_TYPES]
        self.writers: list[Any] = []
        try:
            for path, kind in zip(self.paths, _XML_WRITERS, strict=True):
                writer = kind(str(path), cr.GZ_COMPRESSION)  # OSError if the file exists: never ours to remove
                self.writers.append(writer)
                writer.set_num_of_pkgs(count)
        except BaseException:
            self.__exit__(None, True, None)
            raise

    def add_pkg(self, pkg: cr.Package) -> None:
        for writer in self.writers:
            writer.add_pkg(pkg)

    def add_chunks(self, primary: str, filelists: str, other: str) -> None:
        self.writers[0].add_chunk(primary)
        self.writers[1].add_chunk(filelists)
        self.writers[2].add_chunk(other)

    def __enter__(self) -> _XmlFiles:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        for writer in self.writers:
            writer.close()
        if exc is not None:
            for path in self.paths[: len(self.writers)]:
                path.unlink(missing_ok=True)


# What a reader sends back for each package: the PackageRecord fields but the stat
# key, then its primary, filelists and other XML.
_Read = tuple[str, str, str, str, str, str, str, int, str, str, str]


class _Reader:
    """A forked process that reads a slice of the packages and sends back, in one
    message, their record fields and XML chunks (``cr.xml_dump``: what ``add_pkg`` writes).

    It is always reaped: by ``result`` or, if that was never reached, by ``stop``
    (which kills it first)."""

    def __init__(self, paths: Sequence[str], hrefs: Sequence[str], *, compress: bool) -> None:
        self.first = Path(paths[0]).name
        self.last = Path(paths[-1]).name
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            raise
        if pid == 0:  # pragma: no cover (the child; its outcome is checked through the parent)
            os.close(read_end)
            _reader_child(write_end, paths, hrefs, compress)
        os.close(write_end)
        self.pid: int | None = pid
        self.fd: int | None = read_end

    def result(self) -> tuple[list[_Read], list[gzmember.Segment]]:
        """The reader's packages and, if it compressed them, its three XML segments;
        RpmError or PublishError as it met them, PublishError if it died."""
        assert self.fd is not None and self.pid is not None
        parts = []
        while block := os.read(self.fd, 1 << 20):
            parts.append(block)
        os.close(self.fd)
        self.fd = None
        message: Any = None
        try:
            message = marshal.loads(b"".join(parts))
        except (EOFError, ValueError, TypeError):
            pass  # nothing or half a message: it died, and its status says how
        if isinstance(message, tuple) and message[0] == "ok":
            # Reaped by stop(): it closed the pipe just before os._exit.
            return list(message[1]), [gzmember.Segment(*segment) for segment in message[2]]
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        if isinstance(message, tuple) and message[0] == "RpmError":
            raise RpmError(str(message[1]))
        if isinstance(message, tuple) and message[0] == "PublishError":
            raise PublishError(str(message[1]))
        why = str(message[1]) if isinstance(message, tuple) and message[0] == "error" else _ended(status)
        raise PublishError(f"the metadata reader for {self.first} .. {self.last} failed: {why}")

    def stop(self) -> None:
        """Reap the reader; one whose message was not read in full is killed first."""
        if self.pid is not None:
            if self.fd is not None:
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _ended(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


def _reader_child(fd: int, paths: Sequence[str], hrefs: Sequence[str], compress: bool) -> NoReturn:  # pragma: no cover
    """Read, dump (and compress), send one message, and leave with os._exit: never
    return into the parent's code. Runs in the forked reader only."""
    code = 1
    try:
        # The parent owns interrupts (its handlers may kill containers); the reader just dies.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        message: tuple[Any, ...]
        try:
            out: list[_Read] = []
            columns: tuple[list[str], list[str], list[str]] = ([], [], [])
            for path, href in zip(paths, hrefs, strict=True):
                pkg = _load(path, href)
                primary, filelists, other = cr.xml_dump(pkg)
                if compress:  # the chunks go into this reader's segments, not the message
                    columns[0].append(primary)
                    columns[1].append(filelists)
                    columns[2].append(other)
                    primary = filelists = other = ""
                out.append(
                    (
                        pkg.location_href,
                        pkg.name,
                        pkg.epoch or "0",
                        pkg.version,
                        pkg.release,
                        pkg.arch,
                        pkg.pkgId,
                        int(pkg.size_package),
                        primary,
                        filelists,
                        other,
                    )
                )
            segments = [gzmember.segment("".join(column).encode()) for column in columns] if compress else []
            message = ("ok", out, [(done.data, done.crc, done.size) for done in segments])
        except (RpmError, PublishError) as exc:
            message = (type(exc).__name__, exc.message)
        except Exception as exc:  # reported to the parent, which raises PublishError
            message = ("error", f"{type(exc).__name__}: {exc}")
        data = memoryview(marshal.dumps(message))
        while data:
            data = data[os.write(fd, data) :]
        os.close(fd)  # the parent reads EOF now, not after this process's memory is torn down
        code = 0
    finally:
        os._exit(code)


@dataclass(frozen=True)
class _Tree:
    """The packages of a generation in order: path, stat key, reused package (None: to read)."""

    hrefs: Sequence[str]
    paths: Sequence[str]
    keys: Sequence[StatKey]
    reused: Sequence[cr.Package | None]
    to_read: Sequence[int]  # indexes of the packages to read


def _build_parallel(out_dir: Path, tree: _Tree, workers: int) -> list[PackageRecord]:
    """The XML files for ``tree``: this process reads the first packages of
    ``to_read``, ``workers`` forked readers read the rest in contiguous slices.

    When nothing is reused (a full generation) each reader also compresses its
    slice, and the files are gzip members of this process's and the readers'
    segments; otherwise the readers' chunks go to createrepo_c's writers in their
    place among the reused packages."""
    compress = len(tree.to_read) == len(tree.hrefs)
    own = _own_share(len(tree.to_read), len(tree.hrefs) - len(tree.to_read), workers, readers_compress=compress)
    rest = tree.to_read[own:]
    readers: list[_Reader] = []
    try:
        # Fork before any output is open: the readers inherit no half-written stream.
        try:
            for part in range(workers):
                piece = rest[len(rest) * part // workers : len(rest) * (part + 1) // workers]
                if piece:
                    slice_paths = [tree.paths[i] for i in piece]
                    readers.append(_Reader(slice_paths, [tree.hrefs[i] for i in piece], compress=compress))
        except OSError as exc:  # no process to spare (EAGAIN, ENOMEM): slower, not wrong
            log.warning("cannot fork a metadata reader (%s), reading every package in this process", exc)
            for reader in readers:
                reader.stop()
            readers, own = [], len(tree.to_read)
        if compress:
            return _write_segments(out_dir, tree, own, readers)
        return _write_chunks(out_dir, tree, set(tree.to_read[:own]), readers)
    finally:
        for reader in readers:
            reader.stop()


def _received_record(item: _Read, href: str, key: StatKey) -> PackageRecord:
    if item[0] != href:
        raise PublishError(f"the metadata reader sent {item[0]} where {href} was due")
    return PackageRecord(*item[:8], stat=key)


def _write_chunks(out_dir: Path, tree: _Tree, mine: set[int], readers: Sequence[_Reader]) -> list[PackageRecord]:
    """createrepo_c's writers, fed reused and own packages, and the readers' chunks in order."""
    pending = iter(readers)
    received: list[_Read] = []
    position = 0
    records: list[PackageRecord] = []
    with _XmlFiles(out_dir, len(tree.hrefs)) as xml:
        for index, href in enumerate(tree.hrefs):
            pkg = tree.reused[index]
            if pkg is None and index in mine:
                pkg = _load(tree.paths[index], href)
            if pkg is not None:
                xml.add_pkg(pkg)
                records.append(_record(pkg, tree.keys[index]))
                continue
            if position == len(received):
                received, position = next(pending).result()[0], 0
            item = received[position]
            position += 1
            xml.add_chunks(item[8], item[9], item[10])
            records.append(_received_record(item, href, tree.keys[index]))
    return records


def _write_segments(out_dir: Path, tree: _Tree, own: int, readers: Sequence[_Reader]) -> list[PackageRecord]:
    """Every package read: gzip members of the XML frame createrepo_c writes, this
    process's first ``own`` packages and the readers' compressed slices."""
    frames = _xml_frames(out_dir, len(tree.hrefs))
    texts: list[list[str]] = [[header] for header, _ in frames]
    records: list[PackageRecord] = []
    for index in range(own):
        pkg = _load(tree.paths[index], tree.hrefs[index])
        for column, chunk in enumerate(cr.xml_dump(pkg)):
            texts[column].append(chunk)
        records.append(_record(pkg, tree.keys[index]))
    segments = [[gzmember.segment("".join(column).encode())] for column in texts]
    for reader in readers:
        items, theirs = reader.result()
        for item in items:
            index = len(records)
            records.append(_received_record(item, tree.hrefs[index], tree.keys[index]))
        for mine, segment in zip(segments, theirs, strict=True):
            mine.append(segment)
    for parts, (_, footer) in zip(segments, frames, strict=True):
        parts.append(gzmember.segment(footer.encode(), last=True))
    _write_members(out_dir, segments)
    return records


def _write_members(out_dir: Path, members: Sequence[Sequence[gzmember.Segment]]) -> None:
    """primary, filelists and other ``.xml.gz``, one gzip member of ``members`` each (the last segment
    finished); never over a file that is not ours, and none left when writing did not finish."""
    written: list[Path] = []
    try:
        for kind, segments in zip(_METADATA_TYPES, members, strict=True):
            path = out_dir / f"{kind}.xml.gz"
            data = gzmember.member(segments)
            with path.open("xb") as handle:
                written.append(path)
                handle.write(data)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _xml_frames(out_dir: Path, count: int) -> list[tuple[str, str]]:
    """(header, footer) of primary, filelists and other for ``count`` packages, as
    createrepo_c's own writers make them (an empty uncompressed file, split)."""
    frames = []
    for kind, writer_type in zip(_METADATA_TYPES, _XML_WRITERS, strict=True):
        path = out_dir / f".{kind}.frame.{os.getpid()}"
        path.unlink(missing_ok=True)  # ours: named after this process
        try:
            writer = writer_type(str(path), cr.NO_COMPRESSION)
            writer.set_num_of_pkgs(count)
            writer.close()
            text = path.read_text(encoding="utf-8")
        finally:
            path.unlink(missing_ok=True)
        cut = text.rindex("</")
        frames.append((text[:cut], text[cut:]))
    return frames


def _finish(out_dir: Path, packages: list[cr.Package] | None) -> list[str]:
    """repomd.xml for the three XML files (renamed to their checksums), and the
    sqlite databases of ``packages`` when given (an empty list: empty databases)."""
    repomd = cr.Repomd()
    repomd.set_revision(str(int(time.time())))
    names: list[str] = []
    databases = {"primary": cr.PrimarySqlite, "filelists": cr.FilelistsSqlite, "other": cr.OtherSqlite}
    for kind in _METADATA_TYPES:
        record = cr.RepomdRecord(kind, str(out_dir / f"{kind}.xml.gz"))
        record.fill(cr.SHA256)
        record.rename_file()
        repomd.set_record(record)
        names.append(Path(record.location_href).name)
        if packages is not None:
            db_path = out_dir / f"{kind}.sqlite"
            database = databases[kind](str(db_path))
            for pkg in packages:
                database.add_pkg(pkg)
            database.dbinfo_update(record.checksum)  # ties the database to its XML, as yum checks
            database.close()
            compressed = cr.RepomdRecord(f"{kind}_db", str(db_path)).compress_and_fill(cr.SHA256, cr.BZ2_COMPRESSION)
            compressed.type = f"{kind}_db"
            compressed.db_ver = _SQLITE_DB_VERSION  # yum ignores a database of any other version
            compressed.rename_file()
            db_path.unlink()
            repomd.set_record(compressed)
            names.append(Path(compressed.location_href).name)
    (out_dir / "repomd.xml").write_text(repomd.xml_dump())
    return names


def read_repomd(repodata: Path) -> list[RepomdEntry]:
    """The files ``repodata/repomd.xml`` names, with their checksums."""
    try:
        repomd = cr.Repomd(str(repodata / "repomd.xml"))
    except (OSError, cr.CreaterepoCError) as exc:
        raise PublishError(f"{repodata / 'repomd.xml'} is unreadable ({exc})") from exc
    return [
        RepomdEntry(rec.type, rec.location_href, rec.checksum, rec.checksum_type, int(rec.size))
        for rec in repomd.records
    ]


def file_checksum(path: Path, kind: str = CHECKSUM) -> str:
    digest = hashlib.new(kind)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_repo(repo_dir: Path, verify_packages: Iterable[str] = ()) -> list[str]:
    """Problems with the repo at ``repo_dir``: every file repomd names must exist with its
    checksum, every package primary names must exist with its size, and the packages in
    ``verify_packages`` (hrefs) must also match their checksum. Empty list: consistent."""
    problems: list[str] = []
    entries = read_repomd(repo_dir / "repodata")
    for entry in entries:
        path = repo_dir / entry.href
        if not path.is_file():
            problems.append(f"{entry.href} named by repomd.xml is missing")
        elif file_checksum(path, entry.checksum_type) != entry.checksum:
            problems.append(f"{entry.href} does not match its checksum in repomd.xml")
    if problems:
        return problems
    wanted = set(verify_packages)
    primary = next((entry for entry in entries if entry.type == "primary"), None)
    if primary is None:
        return ["repomd.xml names no primary metadata"]
    packages: list[cr.Package] = []
    try:
        # primary alone names every package with its size and checksum; filelists and other need not be parsed
        cr.xml_parse_primary(str(repo_dir / primary.href), pkgcb=packages.append, do_files=False)
    except (OSError, cr.CreaterepoCError) as exc:
        return [f"metadata in {repo_dir} is unreadable ({exc})"]
    base = str(repo_dir)
    for pkg in packages:
        href = pkg.location_href
        location = os.path.join(base, href)  # noqa: PTH118 (plain strings: this loop runs once per package)
        try:
            st = os.stat(location)  # noqa: PTH116
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            problems.append(f"{href} named by primary.xml is missing")
        elif st.st_size != pkg.size_package:
            problems.append(f"{href} does not have the size primary.xml gives")
        elif href in wanted and file_checksum(Path(location), pkg.checksum_type) != pkg.pkgId:
            problems.append(f"{href} does not match its checksum in primary.xml")
    return problems


def list_packages(repodata: Path) -> list[PackageRecord]:
    """The packages a repodata directory describes (stat keys zeroed: not read from disk)."""
    return [_record(pkg, (0, 0, 0)) for pkg in _previous_packages(repodata).values()]
