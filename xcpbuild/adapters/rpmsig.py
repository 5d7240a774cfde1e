"""Signing RPMs by writing their signature header ourselves, with gpg-agent making the RSA signatures.

What ``rpmsign --addsign`` does, without a gpg process per signature: the
package's digests are checked first (a damaged package is never signed), then
the header is hashed with SHA-256 and signed (RSAHEADER, 268) by a long-lived
agent session (``gpgagent``), the OpenPGP packets built as gpg builds them
(``openpgp``). The header+payload signature (PGP, 1002) is added by rpm's own
rule (rpmsign 4.16 and later): when the package has no payload digest (built by
rpm before 4.14, such as CentOS 7's rpmbuild for XCP-ng 8.x), or when asked
(``rpmv3``, rpmsign's ``--rpmv3``, for an EL7 ``rpm -K`` that should also check
the payload). A package with a payload digest needs no more: its header
signature covers that digest, and EL7's rpm installs by its header signature
too, checking each file's digest as it unpacks. Each signature is one RSA
operation, most of the cost of signing. Earlier signatures are replaced, never added to. The new
signature header is laid out as rpm lays one out (entries by tag, each aligned
for its type, the region trailer last) and RESERVEDSPACE (1008) shrinks or
grows so the file keeps its size, as rpmsign arranges. The file is rewritten
next to itself and renamed over the original: a signing that dies leaves the
package as it was, never half-written. Durability (fsync) is the caller's.

A key the agent cannot use unattended (not RSA, passphrase, smartcard, no
gpg-agent) is signed with rpmsign instead, with a log line saying why. Workers
run one agent session each, one per core, each signing whole packages.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from xcpbuild.adapters import gpgagent, openpgp, rpmsign
from xcpbuild.adapters.gpg import SigningKey
from xcpbuild.errors import RpmError, SigningError
from xcpbuild.log import get_logger

log = get_logger("rpmsig")

LEAD_SIZE = 96
_LEAD_MAGIC = b"\xed\xab\xee\xdb"
_HEADER_MAGIC = b"\x8e\xad\xe8\x01\x00\x00\x00\x00"
_CHUNK = 1 << 20

# Tags (rpmtag.h). The signature header's region tag is HEADERSIGNATURES.
REGION_SIGNATURES, REGION_IMMUTABLE = 62, 63
DSAHEADER, RSAHEADER, SHA1HEADER, LONGSIZE, SHA256HEADER = 267, 268, 269, 270, 273
SIG_SIZE, SIG_PGP, SIG_MD5, SIG_GPG, SIG_PGP5, SIG_RESERVEDSPACE = 1000, 1002, 1004, 1005, 1006, 1008
PAYLOADDIGEST, PAYLOADDIGESTALGO, PAYLOADDIGESTALT = 5092, 5093, 5097
# What rpmsign deletes before it adds its own signatures.
_REPLACED = frozenset({SIG_GPG, SIG_PGP, DSAHEADER, RSAHEADER, SIG_PGP5})
_BIN, _STRING, _STRING_ARRAY, _I18NSTRING = 7, 6, 8, 9
_FIXED_SIZE = {0: 0, 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, _BIN: 1}
_ALIGN = {3: 2, 4: 4, 5: 8}
_HASH_SHA256 = 8  # PGPHASHALGO_SHA256, as PAYLOADDIGESTALGO names it


@dataclass(frozen=True)
class Entry:
    """One header entry: tag, type, count and its data exactly as stored."""

    tag: int
    type: int
    count: int
    data: bytes


@dataclass(frozen=True)
class Header:
    entries: tuple[Entry, ...]
    raw: bytes  # magic .. end of the data store, as in the file

    def get(self, tag: int) -> Entry | None:
        return next((entry for entry in self.entries if entry.tag == tag), None)

    def strings(self, tag: int) -> list[str]:
        entry = self.get(tag)
        if entry is None or entry.type not in (_STRING, _STRING_ARRAY, _I18NSTRING):
            return []
        return [part.decode(errors="replace") for part in entry.data.split(b"\0")[: entry.count]]

    def int32(self, tag: int) -> int | None:
        entry = self.get(tag)
        if entry is None or entry.type != 4 or entry.count < 1:
            return None
        return int(struct.unpack(">I", entry.data[:4])[0])

    def int64(self, tag: int) -> int | None:
        entry = self.get(tag)
        if entry is None or entry.type != 5 or entry.count < 1:
            return None
        return int(struct.unpack(">Q", entry.data[:8])[0])


def _entry_size(store: bytes, kind: int, offset: int, count: int) -> int:
    if kind in _FIXED_SIZE:
        return _FIXED_SIZE[kind] * count
    if kind in (_STRING, _STRING_ARRAY, _I18NSTRING):
        end = offset
        for _ in range(1 if kind == _STRING else count):
            end = store.index(b"\0", end) + 1
        return end - offset
    raise ValueError(f"unknown header entry type {kind}")


def read_header(blob: bytes, what: str) -> Header:
    """The header at the start of ``blob`` (``what`` names it in errors)."""
    if blob[:8] != _HEADER_MAGIC or len(blob) < 16:
        raise RpmError(f"{what}: no header magic")
    il, dl = struct.unpack(">II", blob[8:16])
    size = 16 + 16 * il + dl
    if il > 0x10000 or len(blob) < size:
        raise RpmError(f"{what}: truncated header")
    store = blob[16 + 16 * il : size]
    entries = []
    try:
        for index in range(il):
            tag, kind, offset, count = struct.unpack(">IIiI", blob[16 + 16 * index : 32 + 16 * index])
            if index == 0 and tag in (REGION_SIGNATURES, REGION_IMMUTABLE):
                entries.append(Entry(tag, kind, count, store[offset : offset + 16]))
                continue
            if not 0 <= offset <= dl:
                raise ValueError(f"entry {tag} points outside the header")
            entries.append(Entry(tag, kind, count, store[offset : offset + _entry_size(store, kind, offset, count)]))
    except ValueError as exc:
        raise RpmError(f"{what}: malformed header ({exc})") from exc
    return Header(tuple(entries), blob[:size])


def layout(entries: Sequence[Entry], region: int) -> bytes:
    """A header holding ``entries`` (region tag excluded) in one region, laid out as rpm's headerExport does."""
    ordered = sorted((e for e in entries if e.tag != region), key=lambda e: e.tag)
    count = len(ordered) + 1
    store = bytearray()
    index = []
    for entry in ordered:
        store += b"\0" * (-len(store) % _ALIGN.get(entry.type, 1))
        index.append(struct.pack(">IIiI", entry.tag, entry.type, len(store), entry.count))
        store += entry.data
    trailer_at = len(store)
    store += struct.pack(">IIiI", region, _BIN, -16 * count, 16)
    head = _HEADER_MAGIC + struct.pack(">II", count, len(store)) + struct.pack(">IIiI", region, _BIN, trailer_at, 16)
    return head + b"".join(index) + bytes(store)


def signature_header(original: Header, header_packet: bytes, package_packet: bytes | None) -> bytes:
    """``original`` with earlier signatures replaced by ours, the same size if RESERVEDSPACE allows."""
    entries = [e for e in original.entries if e.tag not in _REPLACED]
    entries.append(Entry(RSAHEADER, _BIN, len(header_packet), header_packet))
    if package_packet is not None:
        entries.append(Entry(SIG_PGP, _BIN, len(package_packet), package_packet))
    blob = layout(entries, REGION_SIGNATURES)
    diff = len(blob) - len(original.raw)
    reserved = next((e for e in entries if e.tag == SIG_RESERVEDSPACE and e.type == _BIN), None)
    if diff and reserved is not None and reserved.count - diff > 0:
        size = reserved.count - diff
        entries = [replace(e, count=size, data=bytes(size)) if e is reserved else e for e in entries]
        blob = layout(entries, REGION_SIGNATURES)
    return blob


@dataclass(frozen=True)
class Package:
    lead: bytes
    signature: Header
    header: Header
    payload_offset: int  # where the payload starts in the file


def _padding(size: int) -> int:
    return -size % 8


def read_package(src: BinaryIO, path: Path) -> Package:
    """Lead, signature header and main header of the open package ``src``; leaves it at the payload."""
    lead = src.read(LEAD_SIZE)
    if len(lead) < LEAD_SIZE or lead[:4] != _LEAD_MAGIC:
        raise RpmError(f"{path} is not an RPM package (no RPM lead)")
    signature = _read_next_header(src, f"{path}: signature header")
    src.read(_padding(len(signature.raw)))
    header = _read_next_header(src, f"{path}: header")
    return Package(lead, signature, header, src.tell())


def _read_next_header(src: BinaryIO, what: str) -> Header:
    start = src.read(16)
    if len(start) < 16:
        raise RpmError(f"{what}: truncated")
    il, dl = struct.unpack(">II", start[8:16])
    if il > 0x10000 or dl > 0x10000000:
        raise RpmError(f"{what}: implausible size")
    return read_header(start + src.read(16 * il + dl), what)


@dataclass
class _Digests:
    header: hashlib._Hash  # the main header
    package: hashlib._Hash  # main header + payload
    payload: hashlib._Hash | None  # payload alone, when the header carries a SHA-256 payload digest
    md5: hashlib._Hash | None  # header + payload, for packages with no payload digest
    size: int


def _hash_package(src: BinaryIO, pkg: Package) -> _Digests:
    header = hashlib.sha256(pkg.header.raw)
    package = header.copy()
    wants_payload = pkg.header.get(PAYLOADDIGEST) is not None and pkg.header.int32(PAYLOADDIGESTALGO) == _HASH_SHA256
    payload = hashlib.sha256() if wants_payload else None
    md5 = None
    if payload is None and pkg.signature.get(SIG_MD5) is not None:
        md5 = hashlib.md5(pkg.header.raw, usedforsecurity=False)
    size = len(pkg.header.raw)
    while chunk := src.read(_CHUNK):
        package.update(chunk)
        if payload is not None:
            payload.update(chunk)
        if md5 is not None:
            md5.update(chunk)
        size += len(chunk)
    return _Digests(header, package, payload, md5, size)


def check_digests(pkg: Package, digests: _Digests, path: Path) -> None:
    """SigningError unless every digest the package carries matches it (as rpmsign checks before signing)."""
    if pkg.header.get(REGION_IMMUTABLE) is None:
        raise SigningError(f"{path.name}: cannot sign an RPM v3 package (no immutable header region)")
    sig = pkg.signature
    payload = digests.payload.hexdigest() if digests.payload else None
    checks: list[tuple[str, str | None, str | None]] = [
        ("SHA-256 header digest", _first(sig.strings(SHA256HEADER)), digests.header.hexdigest()),
        ("SHA-1 header digest", _first(sig.strings(SHA1HEADER)), hashlib.sha1(pkg.header.raw).hexdigest()),
        ("payload digest", _first(pkg.header.strings(PAYLOADDIGEST)), payload),
    ]
    md5 = sig.get(SIG_MD5)
    if digests.md5 is not None and md5 is not None:
        checks.append(("MD5 digest", md5.data.hex(), digests.md5.hexdigest()))
    size = sig.int64(LONGSIZE) if sig.get(LONGSIZE) else sig.int32(SIG_SIZE)
    if size is not None:
        checks.append(("size", str(size), str(digests.size)))
    for name, stored, actual in checks:
        if stored is not None and actual is not None and stored != actual:
            raise SigningError(
                f"not signing {path.name}: its {name} does not match",
                hint="the package is damaged; rebuild or download it again",
            )


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def needs_v3(header: Header) -> bool:
    """Whether rpm's rule gives this package a header+payload signature: it has no payload digest."""
    return header.get(PAYLOADDIGEST) is None and header.get(PAYLOADDIGESTALT) is None


def sign_package(
    path: Path,
    session: gpgagent.AgentSession,
    created: int | None = None,
    dest: Path | None = None,
    *,
    rpmv3: bool = False,
) -> None:
    """Give ``path`` ``session``'s key's header signature (and header+payload one, see the module
    docstring), replacing earlier ones.

    With ``dest`` the signed package is written there (a new file) and ``path``
    is left alone; without, ``path`` is replaced by its signed copy.
    """
    with open(path, "rb") as src:
        pkg = read_package(src, path)
        digests = _hash_package(src, pkg)
    check_digests(pkg, digests, path)
    template = openpgp.SignatureTemplate(bytes.fromhex(session.key.public.fingerprint), created or int(time.time()))
    covered = [digests.header, digests.package] if rpmv3 or needs_v3(pkg.header) else [digests.header]
    finals = []
    for running in covered:
        final = running.copy()
        final.update(template.trailer)
        finals.append(final.digest())
    values = session.sign(finals)
    packets = [template.packet(d, s) for d, s in zip(finals, values, strict=True)]
    signature = signature_header(pkg.signature, packets[0], packets[1] if len(packets) > 1 else None)
    if dest is not None:
        _write_signed(path, pkg, signature, dest, exclusive=True)
        return
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".signing", dir=path.parent)
    os.close(fd)
    _write_signed(path, pkg, signature, Path(temp), exclusive=False)
    try:
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _write_signed(path: Path, pkg: Package, signature: bytes, dest: Path, *, exclusive: bool) -> None:
    """``path`` with a new signature header, written to ``dest`` (removed again if this fails)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        with open(os.open(dest, flags, 0o600), "wb") as out, open(path, "rb") as src:
            os.fchmod(out.fileno(), mode)
            out.write(pkg.lead + signature + bytes(_padding(len(signature))) + pkg.header.raw)
            out.flush()
            offset, left = pkg.payload_offset, os.fstat(src.fileno()).st_size - pkg.payload_offset
            while left > 0:  # the payload, copied by the kernel
                sent = os.sendfile(out.fileno(), src.fileno(), offset, min(left, 1 << 30))
                if sent == 0:
                    raise RpmError(f"{path} shrank while it was being signed")
                offset, left = offset + sent, left - sent
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def sign(paths: Sequence[Path], key: SigningKey, *, created: int | None = None, rpmv3: bool = False) -> None:
    """Add (or replace) ``key``'s signatures on ``paths``, each replaced by rename.

    ``created`` fixes the signatures' creation time (tests compare with rpmsign);
    by default it is the time each package is signed, as gpg does. ``rpmv3``
    adds the header+payload signature to packages that do not need it.
    """
    _sign_all([(path, None) for path in paths], key, created, rpmv3)


def sign_copies(
    sources: Sequence[Path],
    dests: Sequence[Path],
    key: SigningKey,
    *,
    created: int | None = None,
    rpmv3: bool = False,
) -> None:
    """Write signed copies of ``sources`` to ``dests`` (new files); the sources are never modified.

    One read and one write per package, where copying and then signing in place
    would write each file twice.
    """
    if len(sources) != len(dests):
        raise ValueError("one destination per source")
    _sign_all(list(zip(sources, dests, strict=True)), key, created, rpmv3)


def _sign_all(jobs: Sequence[tuple[Path, Path | None]], key: SigningKey, created: int | None, rpmv3: bool) -> None:
    if not jobs:
        return
    try:
        signer = gpgagent.rsa_signer(key)
    except SigningError as exc:
        signer = f"gpg-agent could not be used ({exc.message})"
    if isinstance(signer, str):
        log.info("signing %d package(s) with rpmsign, one gpg process per signature: %s", len(jobs), signer)
        for source, dest in jobs:
            if dest is not None:
                shutil.copyfile(source, dest)
        rpmsign.sign([dest or source for source, dest in jobs], key, rpmv3=rpmv3)
        return
    queue = list(reversed(jobs))
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        with gpgagent.AgentSession(signer) as session:
            while not stop.is_set():
                with lock:
                    if not queue:
                        return
                    source, dest = queue.pop()
                try:
                    sign_package(source, session, created, dest, rpmv3=rpmv3)
                except BaseException:
                    stop.set()
                    raise

    workers = min(_workers(), len(jobs))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpmsig") as pool:
        futures = [pool.submit(worker) for _ in range(workers)]
        try:
            for future in futures:
                future.result()
        finally:
            stop.set()
