"""The verifier's URL handling, plan parsing and checks, against an in-process export server."""

from __future__ import annotations

import argparse
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from xcpbuild import verifier as verify
from xcpbuild import vhd
from xcpbuild.cli import app
from xcpbuild.cli.verify import plan_from_args
from xcpbuild.errors import UsageError
from xcpbuild.exportserver.disk import parse_disk
from xcpbuild.exportserver.server import ExportServer

MiB = 1024 * 1024


def test_token_and_format_are_folded_into_the_url_and_redacted_in_reports() -> None:
    url, fmt = verify.client._prepare_url("http://h:1/export_raw_vdi?vdi=a", "tok", "vhd")
    assert url == "http://h:1/export_raw_vdi?vdi=a&session_id=tok&format=vhd" and fmt == "vhd"
    url, fmt = verify.client._prepare_url("https://h/export_raw_vdi?vdi=a&session_id=mine&format=vhd", "tok", None)
    assert "session_id=mine" in url and fmt == "vhd"
    assert verify.client._redact(url) == "https://h/export_raw_vdi?vdi=a&session_id=***&format=vhd"
    with pytest.raises(UsageError):
        verify.client._prepare_url("http://h/x?format=raw", None, "vhd")
    with pytest.raises(UsageError):
        verify.client._prepare_url("ftp://h/x", None, None)


def _args(*argv: str) -> argparse.Namespace:
    return app.build_parser().parse_args(["verify", "backpressure", "http://h/", *argv])


def test_stalls_pair_with_their_fractions() -> None:
    plan = plan_from_args(
        _args("--stall", "10@0.3", "--stall", "2", "--stall", "1", "--stall-at", "0.9", "--stall-at", "0.1")
    )
    assert plan.stalls == (verify.Stall(0.3, 10.0), verify.Stall(0.1, 2.0), verify.Stall(0.5, 1.0))
    with pytest.raises(UsageError):
        plan_from_args(_args("--stall", "x@y"))
    with pytest.raises(UsageError):
        verify.ClientPlan(stalls=(verify.Stall(1.5, 1),))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    disk = bytearray(3 * MiB + 512)
    disk[777:790] = b"odd offset!!!"
    disk[-5:] = b"tail!"
    path = tmp_path / "d.raw"
    path.write_bytes(bytes(disk))
    server = ExportServer([parse_disk(f"d={path}")], "tok")
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"{server.url}/export_raw_vdi?vdi=d", path
    server.shutdown()
    thread.join()


def test_a_complete_vhd_export_decodes_to_the_disk(served: tuple[str, Path], tmp_path: Path) -> None:
    url, path = served
    report = verify.backpressure(url, token="tok", fmt="vhd", expect_disk=path, save_to=tmp_path / "x.vhd")
    assert report.outcome == "complete" and report.match is True and report.ok
    assert report.bytes_received == report.content_length == (tmp_path / "x.vhd").stat().st_size
    assert vhd.decode((tmp_path / "x.vhd").read_bytes()) == path.read_bytes()


def test_a_different_disk_or_digest_is_a_mismatch(served: tuple[str, Path], tmp_path: Path) -> None:
    url, path = served
    other = tmp_path / "other.raw"
    data = bytearray(path.read_bytes())
    data[3 * MiB] ^= 1
    other.write_bytes(bytes(data))
    for fmt in ("raw", "vhd"):
        report = verify.backpressure(url, token="tok", fmt=fmt, expect_disk=other)
        assert report.outcome == "complete" and report.match is False and not report.ok
        assert str(3 * MiB) in report.detail
    report = verify.backpressure(url, token="tok", expect_sha256="0" * 64)
    assert report.match is False and not report.ok
    shorter = tmp_path / "short.raw"
    shorter.write_bytes(path.read_bytes()[:-512])
    assert verify.backpressure(url, token="tok", fmt="vhd", expect_disk=shorter).match is False


def test_http_errors_and_planned_disconnects_are_reported(served: tuple[str, Path]) -> None:
    url, path = served
    report = verify.backpressure(url, token="bad")
    assert report.status == 403 and report.outcome == "error" and not report.ok
    report = verify.backpressure(url, verify.ClientPlan(disconnect_at=0.5), token="tok", expect_disk=path)
    assert report.outcome == "disconnected" and report.ok
    assert report.bytes_received == int(0.5 * path.stat().st_size)


def test_a_redirect_to_the_host_holding_the_disk_is_followed(served: tuple[str, Path]) -> None:
    url, path = served
    target = url + "&session_id=tok"  # XAPI keeps the query, session included

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    master = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=master.serve_forever)
    thread.start()
    try:
        report = verify.backpressure(f"http://127.0.0.1:{master.server_port}/export_raw_vdi?vdi=d", expect_disk=path)
    finally:
        master.shutdown()
        master.server_close()
        thread.join()
    assert report.outcome == "complete" and report.match is True and report.format == "raw"
    assert any(e.startswith("redirected to") and "session_id=***" in e for e in report.events)
