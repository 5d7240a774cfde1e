"""Request parsing and routing of the export server: every bad request gets its status."""

from __future__ import annotations

import pytest

from xcpbuild.exportserver.request import Export, HttpError, parse_head, route

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
