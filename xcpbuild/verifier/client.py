"""Verify an export under backpressure: download it like a slow backup remote, then check every byte.

The client is a raw-socket HTTP/1.1 client so it controls reading exactly: a
small receive buffer makes a pause fill the server's socket quickly, a stall is
simply not calling recv, a rate limit paces recv, and a disconnect closes the
socket mid-body. What arrives is checked as it arrives (a VHD stream is decoded
back to raw on the fly), so nothing the size of the disk is held in memory.

``backpressure()`` is the entry point for the CLI and for the release pipeline.
"""

from __future__ import annotations

import mmap
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from xcpbuild import vhd
from xcpbuild.errors import UsageError
from xcpbuild.log import get_logger
from xcpbuild.verifier.checker import ContentChecker, SizeRefused
from xcpbuild.verifier.response import BadResponse, ChunkedDecoder, ResponseHead, head_end, parse_head
from xcpbuild.verifier.schedule import (
    Clock,
    Deadline,
    DeadlinePassed,
    Disconnect,
    Stall,
    StallSchedule,
    Throttle,
    point,
)

log = get_logger("verify")

MAX_REDIRECTS = 3
_RECV_CHUNK = 256 * 1024
# The default deadline: an hour for the transfer (more for a big disk of known size, at no less
# than FLOOR_RATE), plus every planned stall and throttled second.
BASE_DEADLINE = 3600.0
FLOOR_RATE = 16 * 1024 * 1024

# How a download ended: all of it, cut short by the server, cut by us on purpose, received but
# with nothing to check it against, or not at all.
Outcome = Literal["complete", "truncated", "disconnected", "unverified", "error"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)


@dataclass(frozen=True)
class ClientPlan:
    """How the client misbehaves. Fractions are of the Content-Length, 0.0-1.0."""

    stalls: tuple[Stall, ...] = ()
    rate: float | None = None  # bytes per second while throttled
    rate_at: float = 0.0  # throttling starts at this fraction...
    rate_for: float | None = None  # ...and lasts this many seconds (None: to the end)
    disconnect_at: float | None = None
    rcvbuf: int | None = 64 * 1024  # small, so a pause fills the server's socket fast
    connect_timeout: float = 30.0  # for the TCP connect and, separately, the TLS handshake
    read_timeout: float = 600.0  # no byte for this long while reading (not stalling) -> error
    deadline: float | None = None  # seconds for the whole download; None: derived, see deadline_for

    def __post_init__(self) -> None:
        for at in [s.at for s in self.stalls] + [self.rate_at] + [self.disconnect_at or 0.0]:
            if not 0.0 <= at <= 1.0:
                raise UsageError(f"a fraction must be within 0..1, not {at}")
        if any(s.seconds < 0 for s in self.stalls):
            raise UsageError("a stall lasts 0 seconds or more")
        if self.rate is not None and self.rate <= 0:
            raise UsageError("--rate must be > 0 bytes per second")
        for name, value in (("--timeout", self.read_timeout), ("--timeout", self.connect_timeout)):
            if not value > 0:
                raise UsageError(f"{name} must be > 0 seconds")
        if self.deadline is not None and not self.deadline > 0:
            raise UsageError("--deadline must be > 0 seconds")

    def deadline_for(self, size: int | None) -> float:
        """The whole download's time limit: the given one, else derived from the plan and the expected size."""
        if self.deadline is not None:
            return self.deadline
        transfer = max(BASE_DEADLINE, size / FLOOR_RATE) if size else BASE_DEADLINE
        stalls = sum(s.seconds for s in self.stalls)
        as_planned = size / self.rate if self.rate and size else 0.0
        throttled = self.rate_for if self.rate_for is not None else as_planned
        return transfer + stalls + throttled


@dataclass
class Report:
    """What one verified download found."""

    url: str  # session_id redacted
    format: str
    outcome: Outcome = "error"
    status: int | None = None
    content_length: int | None = None
    disk_size: int | None = None  # the disk size the export declares (raw: its length; VHD: its footer)
    bytes_received: int = 0
    duration_s: float = 0.0
    deadline_s: float = 0.0
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


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be fetched, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "not http:// or https://"
    if not parts.hostname:
        return "no host"
    if any(c in url for c in "\r\n\0 "):
        return "it holds spaces or control characters"
    return None


def _prepare_url(url: str, token: str | None, fmt: str | None) -> tuple[str, str]:
    """(the URL to fetch, the export format) with the token and format folded into the query."""
    problem = _url_problem(url)
    if problem:
        raise UsageError(f"{url!r} is not a usable URL: {problem}")
    parts = urlsplit(url)
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


def backpressure(
    url: str,
    plan: ClientPlan | None = None,
    *,
    token: str | None = None,
    fmt: str | None = None,
    expect_sha256: str | None = None,
    expect_disk: Path | None = None,
    expect_size: int | None = None,
    max_size: int | None = None,
    save_to: Path | None = None,
    insecure: bool = False,
    cafile: Path | None = None,
    clock: Clock | None = None,
    base_disk: Path | None = None,
) -> Report:
    """Download ``url`` following ``plan`` and check the result; never raises for a loss (see Report.ok).

    Whatever the server answers, the result is a Report (a bad URL or option is a UsageError),
    and the call returns within the plan's deadline (plus one zero-run chunk's hashing).

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
    for name, value in (("--expect-size", expect_size), ("--max-size", max_size)):
        if value is not None and value <= 0:
            raise UsageError(f"{name} must be > 0 bytes")
    report = Report(_redact(full_url), chosen)
    if expect_sha256:
        report.expected = f"sha256:{expect_sha256.lower()}"
    elif expect_disk:
        report.expected = f"disk:{expect_disk}"
    elif expect_size:
        report.expected = f"size:{expect_size}"
    if base_disk is not None and report.expected:
        report.expected += f" (delta {'applied onto' if chosen == 'vhd' else 'relative to'} {base_disk})"
    size_hint = expect_size or (expect_disk.stat().st_size if expect_disk and expect_disk.is_file() else None)
    deadline = Deadline(plan.deadline_for(size_hint), clock)
    report.deadline_s = deadline.seconds
    checker = ContentChecker(
        chosen,
        expect_disk=expect_disk,
        expect_size=expect_size,
        max_size=max_size,
        save_to=save_to,
        deadline=deadline,
        base_disk=base_disk,
    )
    if checker.disk_size is not None and expect_size is not None and checker.disk_size != expect_size:
        checker.close()
        raise UsageError(f"--expect-size {expect_size} contradicts --expect-disk ({checker.disk_size} bytes)")
    try:
        url_now: str | None = full_url
        for _ in range(MAX_REDIRECTS + 1):
            assert url_now is not None
            url_now = _download(url_now, plan, report, checker, deadline, insecure=insecure, cafile=cafile)
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
        report.duration_s = round(deadline.seconds - deadline.remaining(), 3)
    return report


def _connect(url: str, plan: ClientPlan, deadline: Deadline, insecure: bool, cafile: Path | None) -> socket.socket:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        if plan.rcvbuf:
            # Before connect, so the advertised window stays small from the first segment.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, plan.rcvbuf)
        sock.settimeout(deadline.timeout(plan.connect_timeout))
        sock.connect(address)
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
            if insecure:  # XCP-ng hosts ship self-signed certificates
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            # The handshake as a whole (not each read in it) is bounded by this timeout.
            sock.settimeout(deadline.timeout(plan.connect_timeout))
            sock = context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def _read_head(sock: socket.socket, plan: ClientPlan, deadline: Deadline) -> tuple[ResponseHead, bytes]:
    """The response head and the body bytes that came with it; the whole head within the deadline."""
    data = b""
    while True:
        end = head_end(data)
        if end >= 0:
            return parse_head(data[: end - 4]), data[end:]
        sock.settimeout(deadline.timeout(plan.read_timeout))
        chunk = sock.recv(16 * 1024)
        if not chunk:
            raise BadResponse(f"the server closed the connection before a complete response head ({len(data)} bytes)")
        data += chunk


def _download(
    url: str,
    plan: ClientPlan,
    report: Report,
    checker: ContentChecker,
    deadline: Deadline,
    *,
    insecure: bool,
    cafile: Path | None,
) -> str | None:
    """Fetch ``url`` into ``report``; returns the next URL when the server redirects.

    Every way the exchange can fail ends here as the report's outcome and detail.
    """
    parts = urlsplit(url)
    target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    stage = "connecting"
    try:
        sock = _connect(url, plan, deadline, insecure, cafile)
    except (DeadlinePassed, TimeoutError) as exc:
        if isinstance(exc, DeadlinePassed) or deadline.remaining() <= 0:
            report.detail = f"the deadline of {deadline.seconds:g} s passed while connecting (see --deadline)"
        else:
            report.detail = f"cannot connect: no answer within {plan.connect_timeout:g} s"
        return None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; a bad host name, a UnicodeError
        report.detail = f"cannot connect: {exc}"
        return None
    try:
        stage = "sending the request"
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: xcpbuild-verify\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        sock.settimeout(deadline.timeout(plan.read_timeout))
        sock.sendall(request.encode("ascii"))
        stage = "reading the response head"
        head, rest = _read_head(sock, plan, deadline)
        report.status = head.status
        report.content_length = head.content_length
        if head.status in (301, 302, 303, 307, 308) and head.location:
            # A pool master redirects an export to the host that holds the disk.
            location = urljoin(url, head.location)
            problem = _url_problem(location)
            if problem:
                raise BadResponse(f"the server redirected to an unusable URL {_redact(location)!r}: {problem}")
            return location
        if head.status != 200:
            report.detail = f"HTTP {head.status}: {rest[:200].decode('utf-8', 'replace').strip()}"
            return None
        stage = "reading the body"
        _read_body(sock, head, rest, plan=plan, report=report, checker=checker, deadline=deadline)
        return None
    except (DeadlinePassed, TimeoutError) as exc:
        # A socket timeout cut short to what remained of the deadline is the deadline's doing.
        if isinstance(exc, DeadlinePassed) or deadline.remaining() <= 0:
            report.detail = (
                f"the deadline of {deadline.seconds:g} s passed while {stage}, after {report.bytes_received} bytes"
                " (see --deadline)"
            )
        else:
            report.detail = f"no data for {plan.read_timeout:g} s while {stage}, after {report.bytes_received} bytes"
    except BadResponse as exc:
        report.detail = f"malformed response: {exc}"
    except SizeRefused as exc:
        report.match = False
        report.detail = str(exc)
    except vhd.VhdFormatError as exc:
        report.detail = checker.vhd_error(exc)
    except OSError as exc:
        report.outcome = "truncated" if stage == "reading the body" and report.content_length is not None else "error"
        report.detail = f"connection failed while {stage}, after {report.bytes_received} bytes: {exc}"
    except ValueError as exc:  # e.g. a header that breaks a standard-library parser: a report, never a traceback
        report.detail = f"malformed response while {stage}: {exc}"
    finally:
        sock.close()
        report.disk_size = checker.declared
    return None


class _Body:
    """The body's framing: counts what arrives and hands the payload to the checker."""

    def __init__(self, head: ResponseHead, checker: ContentChecker, report: Report) -> None:
        self.total = head.content_length
        self.chunks = ChunkedDecoder() if head.chunked else None
        self.checker = checker
        self.report = report
        self.received = 0
        checker.declare_length(self.total)

    @property
    def ended(self) -> bool:
        if self.chunks is not None:
            return self.chunks.done
        return self.total is not None and self.received >= self.total

    def room(self, limit: int) -> int:
        return min(limit, self.total - self.received) if self.total is not None else limit

    def take(self, data: memoryview) -> None:
        for payload in self.chunks.feed(data) if self.chunks is not None else [data]:
            if self.total is not None:
                payload = payload[: self.total - self.received]
            self.checker.feed(payload)
            self.received += len(payload)
            self.report.bytes_received = self.received

    def cut_short(self) -> str | None:
        """Why the body is incomplete once the server closed the connection, or None."""
        if self.total is not None and self.received < self.total:
            return f"the server closed the connection after {self.received} of {self.total} bytes"
        if self.chunks is not None and not self.chunks.done:
            return f"the server closed the connection after {self.received} bytes, before the last chunk"
        return None


def _read_body(
    sock: socket.socket,
    head: ResponseHead,
    first: bytes,
    *,
    plan: ClientPlan,
    report: Report,
    checker: ContentChecker,
    deadline: Deadline,
) -> None:
    body = _Body(head, checker, report)
    total = body.total
    stalls = StallSchedule(plan.stalls, total, deadline, report.events)
    disconnect = Disconnect(plan.disconnect_at, total)
    throttle = (
        Throttle(plan.rate, point(plan.rate_at, total), plan.rate_for, deadline, report.events) if plan.rate else None
    )
    schedules: list[StallSchedule | Disconnect | Throttle] = [stalls, disconnect, *([throttle] if throttle else [])]
    # Page-aligned (an anonymous mmap): the kernel copies into it 3-4x faster than into a
    # bytearray's malloc'd bytes, 16 bytes off a cache line (benchmarks/README.md, receive buffers).
    buf = memoryview(mmap.mmap(-1, _RECV_CHUNK))
    if first:
        body.take(memoryview(first))
    while not body.ended:
        stalls.wait(body.received)
        if disconnect.reached(body.received):
            report.outcome = "disconnected"
            report.events.append(f"disconnected at byte {body.received}")
            report.detail = f"disconnected on purpose after {body.received} of {total} bytes"
            return
        limit = body.room(len(buf))
        for schedule in schedules:
            at = schedule.next_point(body.received)
            if at is not None:
                limit = min(limit, at - body.received)
        allowance = throttle.allowance(body.received) if throttle else None
        if allowance is not None:
            limit = min(limit, allowance)
        sock.settimeout(deadline.timeout(plan.read_timeout))
        n = sock.recv_into(buf, limit)
        if n == 0:
            break
        if throttle:
            throttle.took(n)
        body.take(buf[:n])
    short = body.cut_short()
    if short:
        report.outcome = "truncated"
        report.detail = short
    else:
        report.outcome = "complete"


def _conclude(report: Report, checker: ContentChecker, expect_sha256: str | None) -> None:
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
        report.detail = checker.vhd_error(exc)
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
    elif checker.expect_size is not None and size != checker.expect_size:
        report.match = False
        report.detail = f"received {size} bytes of disk content, expected {checker.expect_size}"
    elif report.content_length is None and checker.decoder is None and checker.expect_size is None:
        # Close-delimited or chunked raw data: a cut export looks the same as a whole one.
        report.outcome = "unverified"
        report.detail = (
            f"{size} bytes arrived without a Content-Length and with nothing to compare them with; a cut "
            "export would look the same (give --expect-size, --expect-disk or --expect-sha256)"
        )
        return
    if report.match is not False and not report.detail:
        report.detail = "complete" + (", byte-exact" if report.match else "")
