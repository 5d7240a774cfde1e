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

Packages are read in this process and handed to the XML writers as
createrepo_c objects (``add_pkg``), with no Python-side XML strings. A process
pool (workers returning XML chunks) measured slower on the 2-core machines this
runs on: the pickling and fork cost more than the parallel header reads save.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import createrepo_c as cr

from xcpbuild.errors import PublishError, RpmError
from xcpbuild.log import get_logger

log = get_logger("createrepo")

CHECKSUM = "sha256"
_SQLITE_DB_VERSION = 10  # the schema version createrepo_c's sqlite databases carry (db_info.dbversion)
_METADATA_TYPES = ("primary", "filelists", "other")

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
    sqlite: bool = False,
) -> RepodataResult:
    """Write repodata for ``hrefs`` (paths relative to ``repo_dir``) into ``out_dir``.

    ``previous`` is the last generation's repodata directory and ``previous_stats``
    the stat keys its packages were read at; matching packages are reused.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    old = _previous_packages(previous) if previous_stats else {}
    stats = previous_stats or {}
    ordered = sorted(hrefs)
    packages: list[cr.Package] = []
    records: list[PackageRecord] = []
    read = 0
    base = str(repo_dir)
    for href in ordered:
        path = os.path.join(base, href)  # noqa: PTH118 (plain strings: this loop runs once per package)
        try:
            current = stat_key(path)
        except OSError as exc:
            raise PublishError(f"{path} vanished while building metadata") from exc
        pkg = old.get(href)
        if pkg is None or stats.get(href) != current or pkg.checksum_type != CHECKSUM:
            pkg = _load(path, href)
            read += 1
        packages.append(pkg)
        records.append(_record(pkg, current))
    files = _write(out_dir, packages, sqlite)
    return RepodataResult(records, files, read=read, reused=len(ordered) - read)


def _write(out_dir: Path, packages: list[cr.Package], sqlite: bool) -> list[str]:
    writers = (
        ("primary", cr.PrimaryXmlFile(str(out_dir / "primary.xml.gz"), cr.GZ_COMPRESSION)),
        ("filelists", cr.FilelistsXmlFile(str(out_dir / "filelists.xml.gz"), cr.GZ_COMPRESSION)),
        ("other", cr.OtherXmlFile(str(out_dir / "other.xml.gz"), cr.GZ_COMPRESSION)),
    )
    for _, writer in writers:
        writer.set_num_of_pkgs(len(packages))
        for pkg in packages:
            writer.add_pkg(pkg)
        writer.close()
    repomd = cr.Repomd()
    repomd.set_revision(str(int(time.time())))
    names: list[str] = []
    databases = {"primary": cr.PrimarySqlite, "filelists": cr.FilelistsSqlite, "other": cr.OtherSqlite}
    for kind, _ in writers:
        record = cr.RepomdRecord(kind, str(out_dir / f"{kind}.xml.gz"))
        record.fill(cr.SHA256)
        record.rename_file()
        repomd.set_record(record)
        names.append(Path(record.location_href).name)
        if sqlite:
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
