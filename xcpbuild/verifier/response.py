"""The HTTP response as the verifier reads it: a strict head parser and the chunked body decoder.

Strict on purpose: the verifier is pointed at servers under test, so whatever
is ambiguous (a duplicated Content-Length, a length that is not ASCII digits,
both a length and a transfer coding, a folded header line) is a finding to
report, not something to guess around.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RESPONSE_HEAD = 64 * 1024
MAX_CHUNK_LINE = 4096
# Headers that must appear at most once: a second copy would make the body's framing ambiguous.
SINGLE_HEADERS = ("content-length", "transfer-encoding", "location")

_STATUS_LINE = re.compile(r"HTTP/1\.[01] ([0-9]{3})(?: (.*))?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also accepts "²"
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")


class BadResponse(Exception):
    """The server's answer is not a well-formed HTTP/1.1 response (the message says how)."""


@dataclass(frozen=True)
class ResponseHead:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    content_length: int | None
    chunked: bool

    @property
    def location(self) -> str | None:
        return self.headers.get("location")


def head_end(data: bytes) -> int:
    """Where the head ends in ``data`` (the index after the blank line), or -1 while incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if b"\n\n" in data:
            raise BadResponse("the response head ends lines with a bare LF, not CRLF")
        if len(data) > MAX_RESPONSE_HEAD:
            raise BadResponse(f"the response head is larger than {MAX_RESPONSE_HEAD // 1024} KiB")
        return -1
    if end > MAX_RESPONSE_HEAD:
        raise BadResponse(f"the response head is larger than {MAX_RESPONSE_HEAD // 1024} KiB")
    return end + 4


def parse_head(raw: bytes) -> ResponseHead:
    """Parse a response head (without the blank line that ends it)."""
    lines = raw.decode("latin-1").split("\r\n")
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None:
        raise BadResponse(f"malformed status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadResponse(f"malformed header line {line[:100]!r}")
        key = name.lower()
        if key in headers and key in SINGLE_HEADERS:
            raise BadResponse(f"{name} appears twice ({headers[key]!r} and {value.strip()!r})")
        headers[key] = value.strip(" \t")
    length = headers.get("content-length")
    if length is not None and not _DIGITS.fullmatch(length):
        raise BadResponse(f"Content-Length {length[:40]!r} is not a number of bytes")
    coding = headers.get("transfer-encoding")
    if coding is not None and coding.lower() != "chunked":
        raise BadResponse(f"unsupported Transfer-Encoding {coding[:40]!r} (only chunked is understood)")
    if coding is not None and length is not None:
        raise BadResponse("the response has both a Content-Length and a Transfer-Encoding")
    return ResponseHead(
        status=int(status.group(1)),
        reason=status.group(2) or "",
        headers=headers,
        content_length=int(length) if length is not None else None,
        chunked=coding is not None,
    )


class ChunkedDecoder:
    """Undo ``Transfer-Encoding: chunked`` as the bytes arrive; ``done`` once the last chunk and trailers came."""

    def __init__(self) -> None:
        self._line = bytearray()
        self._state = "size"  # size | data | data-end | trailer
        self._left = 0  # bytes of the current chunk still to come
        self.done = False

    def feed(self, data: memoryview) -> list[memoryview]:
        """The payload in ``data``; bytes after the end are ignored (the connection closes)."""
        out: list[memoryview] = []
        view = data
        while view and not self.done:
            if self._state == "data":
                take = min(len(view), self._left)
                out.append(view[:take])
                self._left -= take
                view = view[take:]
                if self._left == 0:
                    self._state = "data-end"
                continue
            newline = bytes(view[: MAX_CHUNK_LINE + 1]).find(b"\n")
            if newline < 0:
                self._add_line(view)
                view = view[len(view) :]
                continue
            self._add_line(view[: newline + 1])
            view = view[newline + 1 :]
            line = bytes(self._line)
            self._line.clear()
            self._line_done(line)
        return out

    def _add_line(self, part: memoryview) -> None:
        self._line += part
        if len(self._line) > MAX_CHUNK_LINE:
            raise BadResponse(f"a chunk-size or trailer line is longer than {MAX_CHUNK_LINE} bytes")

    def _line_done(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            raise BadResponse("a chunked body line ends with a bare LF, not CRLF")
        text = line[:-2]
        if self._state == "data-end":
            if text:
                raise BadResponse("a chunk is longer than its size line says")
            self._state = "size"
        elif self._state == "size":
            size = _CHUNK_SIZE.fullmatch(text)
            if size is None:
                raise BadResponse(f"malformed chunk size line {text[:40]!r}")
            self._left = int(size.group(1), 16)
            self._state = "data" if self._left else "trailer"
        elif not text:  # the blank line after the trailers
            self.done = True
