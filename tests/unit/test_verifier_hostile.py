"""The verifier against a hostile server: every malformed answer is a report (exit 14), never a traceback or a hang.

Each run is the real CLI in a child process with a hard timeout, so a verifier
that hangs fails its test instead of hanging the suite.
"""

from __future__ import annotations

import itertools
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.hostile import Answer, HostileServer, http_head
from xcpbuild import vhd

MiB = 1024 * 1024
HARD_TIMEOUT = 60.0


def verify(url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """(exit code, the JSON report or {}, stderr) of ``xcpbuild verify backpressure URL ARGS``.

    The report's ``duration_s`` is what the time bounds are checked on: the child's start-up
    on a busy machine is not the verifier's doing.
    """
    argv = [sys.executable, "-m", "xcpbuild", "--quiet", "verify", "backpressure", url, "--json", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=HARD_TIMEOUT, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    try:
        report = json.loads(done.stdout) if done.stdout.strip() else {}
    except json.JSONDecodeError:
        report = {}
    return done.returncode, report, done.stderr


def whole(body: bytes, *headers: str) -> Answer:
    """The head and the body in one send: a defect in the body is in the first chunk the verifier gets."""
    return lambda: [http_head("200 OK", f"Content-Length: {len(body)}", *headers) + body]


def _stream(disk_size: int = 4 * MiB, blocks: tuple[int, ...] = (0,)) -> bytearray:
    return bytearray(vhd.encode(b"\x01" * disk_size, list(blocks)))


def _defect(name: str) -> bytes:
    stream = _stream(blocks=(0, 1))
    if name == "footer checksum":
        stream[100] ^= 0xFF  # inside the footer copy, outside its checksum field
    elif name == "header cookie":
        stream[vhd.HEADER_OFFSET : vhd.HEADER_OFFSET + 8] = b"garbage!"
    elif name == "ascending":
        at = vhd.TABLE_OFFSET
        first, second = struct.unpack(">2I", stream[at : at + 8])
        stream[at : at + 8] = struct.pack(">2I", second, first)  # block 1 stored before block 0
    elif name == "block size":
        stream[vhd.HEADER_OFFSET : vhd.HEADER_OFFSET + vhd.HEADER_SIZE] = vhd.Header(2, block_size=4096).encode()
    elif name == "not dynamic":
        footer = vhd.Footer(4 * MiB, disk_type=vhd.DISK_FIXED).encode()
        stream[: vhd.FOOTER_SIZE] = footer
        stream[-vhd.FOOTER_SIZE :] = footer
    return bytes(stream)


# -- 1. tracebacks instead of reports -------------------------------------------------------------
@pytest.mark.parametrize("defect", ["footer checksum", "header cookie", "ascending", "block size", "not dynamic"])
def test_a_vhd_defect_in_the_first_chunk_is_a_report(defect: str) -> None:
    with HostileServer(whole(_defect(defect))) as server:
        code, report, _ = verify(server.url("/export_raw_vdi?vdi=d&format=vhd"))
    assert code == 14
    assert report["outcome"] == "error" and defect in report["detail"]
    # says where, not "after 0 bytes"
    assert "invalid VHD stream at byte" in report["detail"] and "(reading the" in report["detail"]


def test_a_content_length_that_is_not_ascii_digits_is_a_report() -> None:
    with HostileServer(lambda: [http_head("200 OK", "Content-Length: \u00b2".encode().decode("latin-1")) + b"xy"]) as s:
        code, report, _ = verify(s.url())
    assert code == 14 and "Content-Length" in report["detail"] and "not a number" in report["detail"]


def test_a_port_out_of_range_is_a_usage_error_in_the_url_and_a_report_in_a_redirect() -> None:
    code, _, stderr = verify("http://127.0.0.1:99999/export_raw_vdi?vdi=d")
    assert code == 2 and "out of range" in stderr
    redirect = lambda: [http_head("302 Found", "Location: http://127.0.0.1:99999/x", "Content-Length: 0")]  # noqa: E731
    with HostileServer(redirect) as server:
        code, report, _ = verify(server.url())
    assert code == 14 and "unusable URL" in report["detail"]


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
        b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000,
        b"",
    ],
)
def test_malformed_heads_and_framings_are_reports(answer: bytes) -> None:
    with HostileServer(lambda: [answer]) as server:
        code, report, _ = verify(server.url(), "--timeout", "5")
    assert code == 14 and report["outcome"] == "error" and report["detail"]
    assert report["duration_s"] < 5


# -- 2. no hang beyond the time the user gave --------------------------------------------------------
def _trickle(prefix: bytes, byte: bytes = b"x", pause: float = 0.4) -> Answer:
    def answer() -> Iterator[bytes | float]:
        yield prefix
        while True:
            yield byte
            yield pause

    return answer


@pytest.mark.parametrize(
    ("answer", "stage"),
    [
        (_trickle(b"HTTP/1.1 200 OK\r\nX-Slow: "), "reading the response head"),
        (_trickle(http_head("200 OK", "Content-Length: 1000000")), "reading the body"),
        (lambda: itertools.chain([http_head()], itertools.repeat(b"\0" * 65536)), "reading the body"),  # no length
    ],
    ids=["trickled-head", "trickled-body", "endless-body"],
)
def test_the_deadline_bounds_the_whole_run(answer: Answer, stage: str) -> None:
    with HostileServer(answer) as server:
        code, report, _ = verify(server.url(), "--timeout", "2", "--deadline", "3")
    assert code == 14 and "deadline of 3 s passed while " + stage in report["detail"]
    assert 2.9 < report["duration_s"] < 3.5


def test_the_timeout_bounds_the_tls_handshake() -> None:
    with HostileServer(lambda: [60.0], read_request=False) as server:  # accepts, never answers the ClientHello
        code, report, _ = verify(server.url(scheme="https"), "--timeout", "1", "--insecure")
    assert code == 14 and "cannot connect: no answer within 1 s" in report["detail"]
    assert report["duration_s"] < 1.5


def test_a_default_deadline_follows_the_plan() -> None:
    from xcpbuild import verifier

    plan = verifier.ClientPlan(stalls=(verifier.Stall(0.5, 30.0),), rate=1024.0, rate_for=10.0)
    assert plan.deadline_for(None) == 3600 + 30 + 10
    assert verifier.ClientPlan(rate=1024.0).deadline_for(1024 * 7200) == 3600 + 7200
    assert verifier.ClientPlan().deadline_for(100 * 1024**3) > 3600  # a big disk gets more than an hour
    assert verifier.ClientPlan(deadline=5.0).deadline_for(10**12) == 5.0


# -- 3. the zero bomb ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zero_bomb() -> bytes:
    """A valid 4 MiB stream declaring 2040 GiB, every block unallocated."""
    lay = vhd.layout(vhd.MAX_VIRTUAL_SIZE, [])
    return lay.prefix + lay.footer


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--expect-size", "1G"), "the expected disk has 1073741824"),
        ((), "more than 68719476736 bytes (--max-size)"),
        (("--max-size", "1T"), "more than 1099511627776 bytes (--max-size)"),
    ],
)
def test_a_declared_size_that_differs_or_is_too_large_fails_at_once(
    zero_bomb: bytes, args: tuple[str, ...], expected: str
) -> None:
    with HostileServer(whole(zero_bomb)) as server:
        code, report, _ = verify(server.url("/x?format=vhd"), *args)
    assert code == 14 and expected in report["detail"] and report["disk_size"] == vhd.MAX_VIRTUAL_SIZE
    assert report["duration_s"] < 2


def test_a_zero_bomb_the_user_accepts_still_ends_at_the_deadline(zero_bomb: bytes) -> None:
    with HostileServer(whole(zero_bomb)) as server:
        code, report, _ = verify(server.url("/x?format=vhd"), "--max-size", "2T", "--deadline", "3")
    assert code == 14 and "deadline of 3 s passed" in report["detail"]
    assert report["duration_s"] < 3.5


def test_the_expected_disk_size_fails_a_bomb_at_once(zero_bomb: bytes, tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    disk.write_bytes(b"x" * 4096)
    with HostileServer(whole(zero_bomb)) as server:
        code, report, _ = verify(server.url("/x?format=vhd"), "--expect-disk", str(disk))
    assert code == 14 and "the expected disk has 4096" in report["detail"] and report["match"] is False
    assert report["duration_s"] < 2


def test_unallocated_runs_are_compared_with_the_disk_over_its_holes(tmp_path: Path) -> None:
    size = 64 * MiB
    disk = tmp_path / "sparse.raw"
    with open(disk, "wb") as f:
        f.truncate(size)
        f.seek(size - 3)
        f.write(b"end")
    content = bytearray(size)
    content[-3:] = b"end"
    stream = vhd.encode(bytes(content))  # only the last block allocated
    with HostileServer(whole(stream)) as server:
        code, report, _ = verify(server.url("/x?format=vhd"), "--expect-disk", str(disk))
        assert code == 0 and report["match"] is True
        with open(disk, "r+b") as f:
            f.seek(5 * MiB + 7)
            f.write(b"!")  # data where the export has an unallocated block
        code, report, _ = verify(server.url("/x?format=vhd"), "--expect-disk", str(disk))
    assert code == 14 and f"zeros where the disk has data near offset {5 * MiB + 7}" in report["detail"]


# -- 4. duplicated lengths, unframed answers, messages ----------------------------------------------------
def test_a_duplicated_content_length_is_an_error() -> None:
    with HostileServer(whole(b"abcd", "Content-Length: 4")) as server:
        code, report, _ = verify(server.url())
    assert code == 14 and "Content-Length appears twice" in report["detail"]


def _chunked(body: bytes, *, last: bool = True) -> Answer:
    framed = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000]) for i in range(0, len(body), 1000)
    )
    return lambda: [http_head("200 OK", "Transfer-Encoding: chunked") + framed + (b"0\r\n\r\n" if last else b"")]


def test_a_chunked_answer_is_complete_only_against_an_expectation() -> None:
    import hashlib

    body = bytes(range(256)) * 40
    digest = hashlib.sha256(body).hexdigest()
    with HostileServer(_chunked(body)) as server:
        code, report, _ = verify(server.url())
        assert code == 14 and report["outcome"] == "unverified" and "--expect-size" in report["detail"]
        code, report, _ = verify(server.url(), "--expect-sha256", digest)
        assert code == 0 and report["outcome"] == "complete" and report["bytes_received"] == len(body)
        code, report, _ = verify(server.url(), "--expect-size", str(len(body)))
        assert code == 0 and report["outcome"] == "complete"
    with HostileServer(_chunked(body, last=False)) as server:
        code, report, _ = verify(server.url(), "--expect-sha256", digest)
    assert code == 14 and report["outcome"] == "truncated" and "before the last chunk" in report["detail"]


def test_a_close_delimited_raw_answer_is_unverified_without_an_expectation() -> None:
    with HostileServer(lambda: [http_head("200 OK") + b"x" * 5000]) as server:
        code, report, _ = verify(server.url())
        assert code == 14 and report["outcome"] == "unverified"
        code, report, _ = verify(server.url(), "--expect-size", "4096")
        assert code == 14 and "the body grew past 4096 bytes" in report["detail"]
        code, report, _ = verify(server.url(), "--expect-size", "8192")
        assert code == 14 and "received 5000 bytes of disk content, expected 8192" in report["detail"]
        code, report, _ = verify(server.url(), "--expect-size", "5000")
    assert code == 0 and report["outcome"] == "complete"
