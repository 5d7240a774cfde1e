"""Request parsing and routing of the export server: every bad request gets its status."""

from __future__ import annotations

import pytest

from xcpbuild.exportserver.request import Export, HttpError, Request, complete_head, parse_head, route

DISKS = {"vdi1": object(), "other": object()}
TOKEN = "s3cret"


def _head(target: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}".rstrip("\r\n").encode()


def decide(target: str, method: str = "GET", extra: str = "") -> Export:
    return route(parse_head(_head(target, method, extra)), DISKS, TOKEN)


def status_of(head: bytes) -> int:
    with pytest.raises(HttpError) as info:
        route(parse_head(head), DISKS, TOKEN)
    return info.value.status


def test_a_good_request_names_a_configured_disk_and_format() -> None:
    assert decide("/export_raw_vdi?session_id=s3cret&vdi=vdi1&format=vhd") == Export("vdi1", "vhd", False)
    assert decide("/export_raw_vdi?session_id=s3cret&vdi=other") == Export("other", "raw", False)
    assert decide("/export_raw_vdi?vdi=vdi1", "HEAD", "Cookie: a=b; session_id=s3cret\r\n") == Export(
        "vdi1", "raw", True
    )


def test_a_delta_request_names_its_base_among_the_configured_disks() -> None:
    target = "/export_raw_vdi?session_id=s3cret&vdi=vdi1&format=vhd&base=other"
    assert decide(target) == Export("vdi1", "vhd", False, "other")
    assert decide("/export_raw_vdi?session_id=s3cret&vdi=vdi1&base=other").base == "other"
    assert decide("/export_raw_vdi?session_id=s3cret&vdi=vdi1").base is None


@pytest.mark.parametrize(
    ("target", "method", "extra", "status"),
    [
        ("/export_raw_vdi?vdi=vdi1", "GET", "", 401),
        ("/export_raw_vdi?session_id=&vdi=vdi1", "GET", "", 401),
        ("/export_raw_vdi?session_id=wrong&vdi=vdi1", "GET", "", 403),
        ("/export_raw_vdi?vdi=vdi1", "GET", "Cookie: session_id=wrong\r\n", 403),
        ("/export_raw_vdi?session_id=s3cret&vdi=nope", "GET", "", 404),
        ("/export_raw_vdi?session_id=s3cret&vdi=../../etc/passwd", "GET", "", 404),
        ("/export_raw_vdi?session_id=s3cret&vdi=%2Fetc%2Fpasswd", "GET", "", 404),
        ("/export_raw_vdi?session_id=s3cret", "GET", "", 400),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1&format=qcow2", "GET", "", 400),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1&vdi=other", "GET", "", 400),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1&base=nope", "GET", "", 404),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1&base=..%2Fother", "GET", "", 404),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1&base=vdi1", "GET", "", 400),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1&base=", "GET", "", 400),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1&base=other&base=other", "GET", "", 400),
        ("/export_raw_vdi?vdi=vdi1&base=other", "GET", "", 401),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1&&", "GET", "", 400),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1", "POST", "", 405),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1", "DELETE", "", 405),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1", "GET", "Content-Length: 5\r\n", 400),
        ("/export_raw_vdi?session_id=s3cret&vdi=vdi1", "GET", "Transfer-Encoding: chunked\r\n", 400),
        ("/etc/passwd", "GET", "", 404),
        ("/export_raw_vdi/../etc/passwd?session_id=s3cret&vdi=vdi1", "GET", "", 404),
        ("/", "GET", "", 404),
    ],
)
def test_bad_requests_get_their_status(target: str, method: str, extra: str, status: int) -> None:
    assert status_of(_head(target, method, extra)) == status


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"garbage", 400),
        (b"GET /export_raw_vdi HTTP/1.1 extra", 400),
        (b"GET  /export_raw_vdi HTTP/1.1", 400),
        (b"GET export_raw_vdi HTTP/1.1\r\nHost: x", 400),
        (b"GET /export_raw_vdi HTTP/2.0\r\nHost: x", 505),
        (b"GET /export_raw_vdi FTP/1.0", 400),
        (b"G(T /export_raw_vdi HTTP/1.1\r\nHost: x", 400),
        (b"GET /export_raw_vdi HTTP/1.1\r\nno colon here", 400),
        (b"GET /export_raw_vdi HTTP/1.1\r\nbad name: x", 400),
        (b"GET /export_raw_vdi HTTP/1.1", 400),  # 1.1 without Host
        (b"GET /\xff HTTP/1.1\r\nHost: x", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1", 414),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 70 + b"Host: x", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 17000, 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y", 400),
    ],
)
def test_malformed_or_oversized_heads_are_refused(head: bytes, status: int) -> None:
    assert status_of(head) == status


@pytest.mark.parametrize(
    ("received", "reason"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "TLS"),  # a ClientHello's first bytes
        (b"GET /export_raw_vdi HTTP/1.1\nHost", "bare LF"),
        (b"GET /export_raw_vdi HTTP/1.1\r\nHost: x\n", "bare LF"),
        (b"\n", "malformed method"),
        (b"G\x00T", "malformed method"),
        (b"A" * 40, "malformed method"),  # no method is that long
    ],
)
def test_a_head_that_cannot_become_a_request_is_refused_on_its_first_bytes(received: bytes, reason: str) -> None:
    with pytest.raises(HttpError) as info:
        complete_head(received)
    assert info.value.status == 400 and reason in info.value.reason


def test_a_head_is_complete_only_at_its_blank_line() -> None:
    assert complete_head(b"") is None
    assert complete_head(b"GET") is None
    assert complete_head(b"GET /export_raw_vdi HTTP/1.1\r\nHost: x\r\n") is None
    assert complete_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody") == b"GET / HTTP/1.1\r\nHost: x"
    with pytest.raises(HttpError) as info:
        complete_head(b"GET /" + b"a" * 17000)
    assert info.value.status == 414


@pytest.mark.parametrize("length", ["0", "00", "000"])
def test_a_zero_content_length_in_any_spelling_is_no_body(length: str) -> None:
    assert decide("/export_raw_vdi?session_id=s3cret&vdi=vdi1", extra=f"Content-Length: {length}\r\n").vdi == "vdi1"


@pytest.mark.parametrize("length", ["1", "+0", "-0", "0x0", "²", "", "1" * 30])
def test_any_other_content_length_is_refused(length: str) -> None:
    # Built directly: a non-ASCII head never reaches routing (parse_head refuses it first).
    request = Request(
        "GET", "/export_raw_vdi?session_id=s3cret&vdi=vdi1", "HTTP/1.1", (("host", "x"), ("content-length", length))
    )
    with pytest.raises(HttpError) as info:
        route(request, DISKS, TOKEN)
    assert info.value.status == 400
