"""Verify an export under backpressure: download it like a slow backup remote, then check every byte.

The client is a raw-socket HTTP/1.1 client so it controls reading exactly: a
small receive buffer makes a pause fill the server's socket quickly, a stall is
simply not calling recv, a rate limit paces recv, and a disconnect closes the
socket mid-body. What arrives is checked as it arrives (a VHD stream is decoded
back to raw on the fly), so nothing the size of the disk is held in memory.

``backpressure()`` is the entry point for the CLI and for the release pipeline.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from xcpbuild import vhd
from xcpbuild.errors import UsageError
from xcpbuild.log import get_logger
from xcpbuild.verifier.delta import DeltaApplier, RawDeltaExpectation
from xcpbuild.verifier.timeline import Timeline

log = get_logger("verify")

MAX_RESPONSE_HEAD = 64 * 1024
MAX_REDIRECTS = 3
_RECV_CHUNK = 256 * 1024
_ZERO_CHUNK = bytes(1024 * 1024)


@dataclass(frozen=True)
class Stall:
    """Stop reading for ``seconds`` once ``at`` (a fraction of the body) has arrived."""

    at: float
    seconds: float


@dataclass(frozen=True)
class ClientPlan:
    """How the client misbehaves. Fractions are of the Content-Length, 0.0-1.0."""

    stalls: tuple[Stall, ...] = ()
    rate: float | None = None  # bytes per second while throttled
    rate_at: float = 0.0  # throttling starts at this fraction...
    rate_for: float | None = None  # ...and lasts this many seconds (None: to the end)
    disconnect_at: float | None = None
    rcvbuf: int | None = 64 * 1024  # small, so a pause fills the server's socket fast
    connect_timeout: float = 30.0
    read_timeout: float = 600.0  # no byte for this long while reading (not stalling) -> error

    def __post_init__(self) -> None:
        for at in [s.at for s in self.stalls] + [self.rate_at] + [self.disconnect_at or 0.0]:
            if not 0.0 <= at <= 1.0:
                raise UsageError(f"a fraction must be within 0..1, not {at}")
        if any(s.seconds < 0 for s in self.stalls):
            raise UsageError("a stall lasts 0 seconds or more")
        if self.rate is not None and self.rate <= 0:
            raise UsageError("--rate must be > 0 bytes per second")


@dataclass
class Report:
    """What one verified download found."""

    url: str  # session_id redacted
    format: str
    outcome: str = "error"  # complete | truncated | disconnected | error
    status: int | None = None
    content_length: int | None = None
    bytes_received: int = 0
    duration_s: float = 0.0
    sha256: str | None = None  # of the disk content received (a VHD decoded back to raw)
    expected: str | None = None  # what it was compared with
    match: bool | None = None  # None: nothing to compare with
    detail: str = ""
    events: list[str] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (seconds, bytes received so far)

    @property
    def ok(self) -> bool:
        """True when nothing was lost: complete and (if checked) equal; or a planned disconnect."""
        if self.outcome == "disconnected":
            return True
        return self.outcome == "complete" and self.match is not False


def _redact(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, "***" if k == "session_id" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def _prepare_url(url: str, token: str | None, fmt: str | None) -> tuple[str, str]:
    """(the URL to fetch, the export format) with the token and format folded into the query."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{url!r} is not an http:// or https:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    if token is not None and "session_id" not in params:
        query.append(("session_id", token))
    url_fmt = params.get("format")
    if fmt is not None and url_fmt is not None and fmt != url_fmt:
        raise UsageError(f"--format {fmt} contradicts format={url_fmt} in the URL")
    if fmt is not None and url_fmt is None:
        query.append(("format", fmt))
    chosen = fmt or url_fmt or "raw"
    if chosen not in ("raw", "vhd"):
        raise UsageError(f"format {chosen!r} is not raw or vhd")
    return urlunsplit(parts._replace(query=urlencode(query))), chosen


class _Checker:
    """Consumes the body as it arrives: decodes VHD, hashes the disk content, compares with a disk."""

    def __init__(self, fmt: str, expect_disk: Path | None, save_to: Path | None, base_disk: Path | None = None) -> None:
        self.decoder = vhd.StreamDecoder() if fmt == "vhd" else None
        self.hash = hashlib.sha256()
        self.disk_fd = os.open(expect_disk, os.O_RDONLY | os.O_CLOEXEC) if expect_disk else None
        self.disk_size = os.lseek(self.disk_fd, 0, os.SEEK_END) if self.disk_fd is not None else None
        # A delta: a VHD one is applied onto the base; a raw one is compared with what XAPI sends.
        self.applier = DeltaApplier(base_disk) if base_disk and fmt == "vhd" else None
        self.raw_delta = (
            RawDeltaExpectation(self.disk_fd, base_disk) if base_disk and fmt == "raw" and self.disk_fd else None
        )
        self._expected = self.raw_delta.read if self.raw_delta else os.pread
        self.save = open(save_to, "wb") if save_to else None  # noqa: SIM115 - closed in close()
        self.raw_pos = 0
        self.mismatch: str | None = None
        self.timeline = Timeline()  # bytes as they came off the wire, for the report's charts

    def close(self) -> None:
        for extra in (self.applier, self.raw_delta):
            if extra is not None:
                extra.close()
        if self.disk_fd is not None:
            os.close(self.disk_fd)
        if self.save is not None:
            self.save.close()

    def feed(self, data: memoryview) -> None:
        self.timeline.add(len(data))
        if self.save is not None:
            self.save.write(data)
        if self.decoder is None:
            self._data(self.raw_pos, data)
            return
        for piece in self.decoder.feed(data):
            if self.applier is not None:
                self.applier.start(self.decoder)
                for offset, content in self.applier.apply(piece):
                    self._data(offset, content)
                if isinstance(piece, vhd.Zeros):
                    self._zeros(piece.offset, piece.length)
            elif isinstance(piece, vhd.Data):
                self._data(piece.offset, memoryview(piece.data))
            elif isinstance(piece, vhd.Zeros):
                self._zeros(piece.offset, piece.length)
            else:
                raise vhd.VhdFormatError("the export is a differencing VHD (a delta): pass --base-disk to apply it")

    def finish(self) -> int:
        """Check the stream ended properly; returns the disk size received."""
        if self.decoder is not None:
            self.decoder.finish()
        return self.raw_pos

    def _data(self, offset: int, data: memoryview) -> None:
        self.hash.update(data)
        if self.disk_fd is not None and self.mismatch is None:
            expected = self._expected(self.disk_fd, len(data), offset)
            if expected != data:
                self.mismatch = f"content differs from the disk near offset {offset + _first_diff(expected, data)}"
        self.raw_pos = offset + len(data)

    def _zeros(self, offset: int, length: int) -> None:
        end = offset + length
        while offset < end:
            n = min(len(_ZERO_CHUNK), end - offset)
            zeros = memoryview(_ZERO_CHUNK)[:n]
            self.hash.update(zeros)
            if self.disk_fd is not None and self.mismatch is None:
                expected = self._expected(self.disk_fd, n, offset)
                if expected != zeros:
                    self.mismatch = f"the export has zeros where the disk has data near offset {offset}"
            offset += n
        self.raw_pos = end


def _first_diff(a: bytes, b: memoryview) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _connect(url: str, plan: ClientPlan, insecure: bool, cafile: Path | None) -> socket.socket:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        if plan.rcvbuf:
            # Before connect, so the advertised window stays small from the first segment.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, plan.rcvbuf)
        sock.settimeout(plan.connect_timeout)
        sock.connect(address)
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
            if insecure:  # XCP-ng hosts ship self-signed certificates
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_RESPONSE_HEAD:
            raise ValueError("response head larger than 64 KiB")
        chunk = sock.recv(16 * 1024)
        if not chunk:
            raise ValueError(f"the server closed the connection before a complete response head ({len(data)} bytes)")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status_parts = lines[0].split(" ", 2)
    if len(status_parts) < 2 or not status_parts[0].startswith("HTTP/1.") or not status_parts[1].isdigit():
        raise ValueError(f"malformed status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_parts[1]), headers, rest


def backpressure(
    url: str,
    plan: ClientPlan | None = None,
    *,
    token: str | None = None,
    fmt: str | None = None,
    expect_sha256: str | None = None,
    expect_disk: Path | None = None,
    save_to: Path | None = None,
    insecure: bool = False,
    cafile: Path | None = None,
    base_disk: Path | None = None,
) -> Report:
    """Download ``url`` following ``plan`` and check the result; never raises for a loss (see Report.ok).

    ``base_disk`` is the local copy of a delta export's base: a VHD delta is applied onto it as it
    arrives, and the rebuilt disk is what ``expect_disk``/``expect_sha256`` check; a raw delta is
    compared with ``expect_disk`` where it differs from the base and zeros elsewhere (XAPI's raw delta).
    """
    plan = plan or ClientPlan()
    full_url, chosen = _prepare_url(url, token, fmt)
    if expect_sha256 is not None and (
        len(expect_sha256) != 64 or any(c not in "0123456789abcdef" for c in expect_sha256.lower())
    ):
        raise UsageError(f"--expect-sha256 {expect_sha256!r} is not 64 hex digits")
    if expect_disk is not None and not expect_disk.is_file() and not expect_disk.is_block_device():
        raise UsageError(f"--expect-disk {expect_disk} is not a readable file")
    if base_disk is not None:
        if not base_disk.is_file() and not base_disk.is_block_device():
            raise UsageError(f"--base-disk {base_disk} is not a readable file")
        if "base" not in dict(parse_qsl(urlsplit(full_url).query)):
            raise UsageError("--base-disk is for a delta export, but the URL has no base= parameter")
        if chosen == "raw" and expect_disk is None:
            raise UsageError("a raw delta is checked against --expect-disk (it holds zeros where nothing changed)")
    report = Report(_redact(full_url), chosen)
    if expect_sha256:
        report.expected = f"sha256:{expect_sha256.lower()}"
    elif expect_disk:
        report.expected = f"disk:{expect_disk}"
    if base_disk is not None and report.expected:
        report.expected += f" (delta {'applied onto' if chosen == 'vhd' else 'relative to'} {base_disk})"
    start = time.monotonic()
    checker = _Checker(chosen, expect_disk, save_to, base_disk)
    try:
        url_now: str | None = full_url
        for _ in range(MAX_REDIRECTS + 1):
            assert url_now is not None
            url_now = _download(url_now, plan, report, checker, insecure=insecure, cafile=cafile)
            if url_now is None:
                break
            report.events.append(f"redirected to {_redact(url_now)}")
        else:
            report.detail = f"more than {MAX_REDIRECTS} redirects"
        _conclude(report, checker, expect_sha256)
        if checker.applier is not None and checker.applier.parent is not None:
            parent = checker.applier.parent
            report.events.append(f"differencing VHD of parent {parent.name!r}, unique id {parent.unique_id.hex()}")
    finally:
        checker.close()
        report.timeline = checker.timeline.samples()
        report.duration_s = round(time.monotonic() - start, 3)
    return report


def _download(
    url: str,
    plan: ClientPlan,
    report: Report,
    checker: _Checker,
    *,
    insecure: bool,
    cafile: Path | None,
) -> str | None:
    """Fetch ``url`` into ``report``; returns the next URL when the server redirects."""
    parts = urlsplit(url)
    target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        sock = _connect(url, plan, insecure, cafile)
    except (OSError, ssl.SSLError) as exc:
        report.detail = f"cannot connect: {exc}"
        return None
    try:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: xcpbuild-verify\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        sock.settimeout(plan.read_timeout)
        sock.sendall(request.encode("ascii"))
        try:
            status, headers, rest = _read_head(sock)
        except (OSError, ValueError) as exc:
            report.detail = f"no valid response: {exc}"
            return None
        report.status = status
        length_text = headers.get("content-length")
        report.content_length = int(length_text) if length_text and length_text.isdigit() else None
        if status in (301, 302, 303, 307, 308) and headers.get("location"):
            # A pool master redirects an export to the host that holds the disk.
            return urljoin(url, headers["location"])
        if status != 200:
            report.detail = f"HTTP {status}: {rest[:200].decode('utf-8', 'replace').strip()}"
            return None
        _read_body(sock, plan, report, checker, rest)
        return None
    finally:
        sock.close()


def _read_body(sock: socket.socket, plan: ClientPlan, report: Report, checker: _Checker, first: bytes) -> None:
    total = report.content_length
    stalls = sorted(plan.stalls, key=lambda s: s.at)
    # Byte positions where something happens (only meaningful with a Content-Length).

    def points(fraction: float) -> int:
        return int(fraction * total) if total is not None else 0

    rate_from = points(plan.rate_at) if plan.rate else None
    rate_started: float | None = None
    rate_bytes = 0
    buf = bytearray(_RECV_CHUNK)
    received = 0

    def take(data: memoryview) -> None:
        nonlocal received
        if total is not None:
            data = data[: total - received]
        checker.feed(data)
        received += len(data)
        report.bytes_received = received

    if first:
        try:
            take(memoryview(first))
        except vhd.VhdFormatError as exc:  # the first segment can hold a whole small stream
            report.detail = f"invalid VHD stream after {received} bytes: {exc}"
            return
    while total is None or received < total:
        while stalls and total is not None and received >= points(stalls[0].at):
            stall = stalls.pop(0)
            report.events.append(f"stalled {stall.seconds:g} s at byte {received}")
            log.info("stalling %g s at byte %d of %s", stall.seconds, received, total)
            time.sleep(stall.seconds)
        if plan.disconnect_at is not None and total is not None and received >= points(plan.disconnect_at):
            report.outcome = "disconnected"
            report.events.append(f"disconnected at byte {received}")
            report.detail = f"disconnected on purpose after {received} of {total} bytes"
            return
        limit = len(buf)
        if total is not None:
            limit = min(limit, total - received)
            upcoming = [points(s.at) for s in stalls] + (
                [points(plan.disconnect_at)] if plan.disconnect_at is not None else []
            )
            ahead = [p - received for p in upcoming if p > received]
            if ahead:
                limit = min(limit, *ahead)
        throttled = False
        if plan.rate and rate_from is not None and received >= rate_from:
            now = time.monotonic()
            if rate_started is None:
                rate_started = now
                report.events.append(f"throttled to {plan.rate:g} B/s at byte {received}")
            if plan.rate_for is None or now - rate_started < plan.rate_for:
                throttled = True
                due = rate_started + rate_bytes / plan.rate
                if due > now:
                    time.sleep(due - now)
                limit = min(limit, max(1, int(plan.rate / 20)))
        try:
            n = sock.recv_into(buf, limit)
        except TimeoutError:
            report.detail = f"no data for {plan.read_timeout:g} s after {received} bytes"
            return
        except OSError as exc:
            report.outcome = "truncated" if total is not None else "error"
            report.detail = f"connection failed after {received} of {total} bytes: {exc}"
            return
        if n == 0:
            break
        if throttled:
            rate_bytes += n
        try:
            take(memoryview(buf)[:n])
        except vhd.VhdFormatError as exc:
            report.detail = f"invalid VHD stream after {received} bytes: {exc}"
            return
    if total is not None and received < total:
        report.outcome = "truncated"
        report.detail = f"the server closed the connection after {received} of {total} bytes"
    else:
        report.outcome = "complete"


def _conclude(report: Report, checker: _Checker, expect_sha256: str | None) -> None:
    """Fill in the digest and the match once the body ended (or failed)."""
    expecting = expect_sha256 is not None or checker.disk_fd is not None
    if report.outcome != "complete":
        if expecting and report.outcome != "disconnected":
            report.match = False
        return
    try:
        size = checker.finish()
    except vhd.VhdFormatError as exc:
        report.outcome = "error"
        report.detail = f"invalid VHD stream: {exc}"
        report.match = False if expecting else None
        return
    report.sha256 = checker.hash.hexdigest()
    if expect_sha256 is not None:
        report.match = report.sha256 == expect_sha256.lower()
        if not report.match:
            report.detail = f"sha256 {report.sha256} differs from the expected {expect_sha256.lower()}"
    elif checker.disk_fd is not None:
        if checker.mismatch:
            report.match, report.detail = False, checker.mismatch
        elif size != checker.disk_size:
            report.match = False
            report.detail = f"received {size} bytes of disk content, the disk has {checker.disk_size}"
        else:
            report.match = True
    if report.match is not False and not report.detail:
        report.detail = "complete" + (", byte-exact" if report.match else "")
