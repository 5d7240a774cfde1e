"""Parse and check one export request: pure functions from request bytes to a decision.

Nothing here touches a file or a socket. A request either becomes an ``Export``
(which configured disk, which format, HEAD or GET) or an ``HttpError`` carrying
the status to answer. No path is ever taken from the request: the ``vdi``
parameter is only a key into the configured disks.
"""

import hmac
import re
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

EXPORT_PATH = "/export_raw_vdi"
FORMATS = ("raw", "vhd")
MAX_HEAD_BYTES = 16 * 1024
MAX_REQUEST_LINE = 8 * 1024
MAX_HEADERS = 64

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(r"^HTTP/1\.[01]$")


class HttpError(Exception):
    """A request answered with an error status and a one-line reason; no disk byte is served."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class Request(NamedTuple):
    method: str
    target: str
    version: str
    headers: Tuple[Tuple[str, str], ...]  # lower-cased names, in order

    def header(self, name: str) -> Optional[str]:
        values = [v for k, v in self.headers if k == name]
        if len(values) > 1:
            raise HttpError(400, f"header {name} given more than once")
        return values[0] if values else None


class Export(NamedTuple):
    vdi: str
    fmt: str
    head_only: bool
    base: Optional[str] = None  # a delta export relative to this configured disk (``base=``)


def parse_head(head: bytes) -> Request:
    """Parse the request line and headers (``head`` ends before the blank line)."""
    if len(head) > MAX_HEAD_BYTES:
        raise HttpError(431, "request head too large")
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request head is not ASCII") from None
    lines = text.split("\r\n")
    request_line = lines[0]
    if len(request_line) > MAX_REQUEST_LINE:
        raise HttpError(414, "request line too long")
    parts = request_line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise HttpError(400, "malformed method")
    if not _VERSION.match(version):
        raise HttpError(505 if version.startswith("HTTP/") else 400, "only HTTP/1.0 and HTTP/1.1 are served")
    if not target.startswith("/") or any(c <= " " or c == "\x7f" for c in target):
        raise HttpError(400, "malformed request target")
    headers: List[Tuple[str, str]] = []
    for line in lines[1:]:
        if len(headers) >= MAX_HEADERS:
            raise HttpError(431, "too many headers")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name) or any(c in value for c in "\r\n\0"):
            raise HttpError(400, "malformed header line")
        headers.append((name.lower(), value.strip(" \t")))
    return Request(method, target, version, tuple(headers))


def _cookie(request: Request, name: str) -> Optional[str]:
    found = None
    for key, value in request.headers:
        if key != "cookie":
            continue
        for pair in value.split(";"):
            k, sep, v = pair.strip().partition("=")
            if sep and k == name:
                found = v
    return found


def route(request: Request, disks: Mapping[str, object], token: str) -> Export:
    """Decide what ``request`` gets: an Export of a configured disk, or an HttpError."""
    if request.header("transfer-encoding") is not None or (request.header("content-length") or "0") != "0":
        raise HttpError(400, "an export request has no body")
    if request.version == "HTTP/1.1" and request.header("host") is None:
        raise HttpError(400, "HTTP/1.1 requires a Host header")
    split = urlsplit(request.target)
    if unquote(split.path) != EXPORT_PATH or split.fragment:
        raise HttpError(404, "not found")
    if request.method not in ("GET", "HEAD"):
        raise HttpError(405, "only GET and HEAD are allowed")
    try:
        pairs = parse_qsl(split.query, keep_blank_values=True, strict_parsing=bool(split.query), max_num_fields=32)
    except ValueError:
        raise HttpError(400, "malformed query string") from None
    params: Dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise HttpError(400, f"parameter {key} given more than once")
        params[key] = value
    session = params.get("session_id") or _cookie(request, "session_id")
    if not session:
        raise HttpError(401, "a session_id is required (query parameter or cookie)")
    if not hmac.compare_digest(session.encode(), token.encode()):
        raise HttpError(403, "invalid session_id")
    vdi = params.get("vdi")
    if not vdi:
        raise HttpError(400, "the vdi parameter is required")
    if vdi not in disks:
        raise HttpError(404, "no such vdi")
    fmt = params.get("format", "raw")
    if fmt not in FORMATS:
        raise HttpError(400, f"format must be one of {', '.join(FORMATS)}")
    base = params.get("base")
    if base is not None:
        # Same rule as vdi: a key into the configured disks, never a path.
        if not base:
            raise HttpError(400, "the base parameter is empty")
        if base not in disks:
            raise HttpError(404, "no such base vdi")
        if base == vdi:
            raise HttpError(400, "base is the vdi itself; a delta needs an older disk")
    return Export(vdi, fmt, request.method == "HEAD", base)
