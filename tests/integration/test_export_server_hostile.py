"""The export server under hostile clients and a disk that changes under it (issue 15, points 5-7).

Every connection goes to 127.0.0.1. The slowloris tests bound what they open (a few dozen
connections) and how long they run (seconds, through a short ``--head-timeout``).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_export_server import TOKEN, Server, random_disk, start_server, wait_for_log
from xcpbuild import verifier as verify
from xcpbuild.exportserver.disk import parse_disk
from xcpbuild.exportserver.server import ExportServer

MiB = 1024 * 1024


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    codes = [s.stop() for s in started]
    assert codes == [0] * len(codes), "SIGTERM must stop the server cleanly"


def _port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _get(vdi: str) -> bytes:
    return f"GET /export_raw_vdi?session_id={TOKEN}&vdi={vdi} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def _ask(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, bytes, float]:
    """Send ``request`` without closing our side (as a real client would) and read the answer."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _wanted(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, body, time.monotonic() - started


def _wanted(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    match = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
    return len(head) + 4 + int(match.group(1)) if match else 1 << 62


class _Tricklers:
    """``count`` connections that each send one byte of a valid request head every ``every`` s."""

    def __init__(self, port: int, count: int, every: float) -> None:
        self.request = _get("d")
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        self.sent = [0] * count
        self.closed_after: list[float | None] = [None] * count
        self.started = time.monotonic()
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            for i, sock in enumerate(self.socks):
                if self.closed_after[i] is not None:
                    continue
                try:
                    sock.send(self.request[self.sent[i] : self.sent[i] + 1])
                    self.sent[i] += 1
                    sock.setblocking(False)
                    try:
                        gone = sock.recv(4096) == b""
                    except BlockingIOError:
                        gone = False
                    sock.setblocking(True)
                except OSError:
                    gone = True
                if gone:
                    self.closed_after[i] = time.monotonic() - self.started

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.socks:
            sock.close()


def test_trickled_heads_do_not_lock_out_a_client_with_a_complete_request(tmp_path: Path, servers: list[Server]) -> None:
    disk = random_disk(tmp_path / "d.raw", MiB)
    server = start_server(tmp_path, {"d": disk}, "--max-connections", "4")
    servers.append(server)
    port = _port(server)
    # 10x the export limit, each sending a byte every 0.5 s (every byte resets a per-recv timeout).
    tricklers = _Tricklers(port, 40, 0.5)
    try:
        time.sleep(1.0)
        for _ in range(3):
            status, body, took = _ask(port, _get("d"))
            assert status == 200 and body == disk.read_bytes(), (status, body[:80])
            assert took < 2.5, f"a complete request waited {took:.1f} s behind trickled heads"
    finally:
        tricklers.close()


def test_a_trickled_head_is_cut_at_one_deadline_for_the_whole_head(tmp_path: Path, servers: list[Server]) -> None:
    disk = random_disk(tmp_path / "d.raw", MiB)
    server = start_server(tmp_path, {"d": disk}, "--head-timeout", "3")
    servers.append(server)
    tricklers = _Tricklers(_port(server), 20, 0.5)
    try:
        deadline = time.monotonic() + 8
        while None in tricklers.closed_after and time.monotonic() < deadline:
            time.sleep(0.2)
        closed = [t for t in tricklers.closed_after if t is not None]
        assert len(closed) == 20, f"{20 - len(closed)} trickled heads outlived the 3 s head deadline"
        assert max(closed) < 5.5 and max(tricklers.sent) < 12, "a head must arrive within one deadline"
    finally:
        tricklers.close()
    wait_for_log(server, "no complete request within 3 s")


def test_connections_still_sending_a_head_are_shed_oldest_first(tmp_path: Path) -> None:
    disk = random_disk(tmp_path / "d.raw", 64 * 1024)
    server = ExportServer([parse_disk(f"d={disk}")], TOKEN, max_connections=2, max_pending_heads=8)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    idle = []
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /export_raw_vdi")  # never finished
            idle.append(sock)
            time.sleep(0.01)  # accepted in order
        status, body, _ = _ask(server.port, _get("d"))
        assert status == 200 and body == disk.read_bytes()
        # The newest incomplete heads are still open; the oldest were closed to make room.
        assert all(_closed(sock) for sock in idle[:12])
        for sock in idle[-7:]:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()
        thread.join(timeout=10)
    assert not thread.is_alive()


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:  # closed with our unread bytes in its buffer
        return True


def _client_hello() -> bytes:
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_bare_lf_and_tls_get_400_at_once_and_a_zero_content_length_is_accepted(
    tmp_path: Path, servers: list[Server]
) -> None:
    disk = random_disk(tmp_path / "d.raw", 64 * 1024)
    server = start_server(tmp_path, {"d": disk})
    servers.append(server)
    port = _port(server)
    hello = _client_hello()
    assert hello[:1] == b"\x16"
    bare_lf = f"GET /export_raw_vdi?session_id={TOKEN}&vdi=d HTTP/1.1\nHost: x\n\n".encode()
    for request in (hello, bare_lf, b"GET /export_raw_vdi HTTP/1.1\r\nHost: x\n"):
        status, body, took = _ask(port, request)  # the connection stays open on our side
        assert status == 400 and took < 2, (request[:40], status, took)
        assert disk.read_bytes()[:16] not in body
    status, body, _ = _ask(port, _get("d").replace(b"Host: x", b"Host: x\r\nContent-Length: 00"))
    assert status == 200 and body == disk.read_bytes()
    status, _, _ = _ask(port, _get("d").replace(b"Host: x", b"Host: x\r\nContent-Length: +0"))
    assert status == 400


def test_a_disk_that_stops_being_the_configured_file_is_refused_with_a_logged_reason(
    tmp_path: Path, servers: list[Server]
) -> None:
    names = ("fifo", "dir", "gone", "resized", "link", "kept")
    disks = {name: random_disk(tmp_path / f"{name}.raw", 64 * 1024) for name in names}
    server = start_server(tmp_path, disks)
    servers.append(server)
    port = _port(server)
    for name in names[:-1]:
        disks[name].unlink()
    os.mkfifo(disks["fifo"])
    disks["dir"].mkdir()
    with open(disks["resized"], "wb") as f:
        f.write(os.urandom(32 * 1024))
    disks["link"].symlink_to(disks["kept"])
    expected = {"fifo": 500, "dir": 500, "gone": 404, "resized": 500, "link": 500}
    for name, want in expected.items():
        status, body, took = _ask(port, _get(name))
        assert status == want and took < 2, (name, status, body)
    log = server.log.read_text()
    assert "disk fifo is now a FIFO" in log and "disk dir is now a directory" in log
    assert "disk gone is gone" in log and "disk resized changed size since start-up (65536 -> 32768 bytes)" in log
    assert "disk link cannot be opened" in log
    status, body, _ = _ask(port, _get("kept"))
    assert status == 200 and body == disks["kept"].read_bytes()
    deadline = time.monotonic() + 5
    while server.threads() > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.threads() == 1, "a request thread is stuck"


def _export_while(server: Server, fmt: str, change: object) -> verify.Report:
    """Export with the client stalled for 2 s early on, and ``change()`` the disk during the stall."""
    plan = verify.ClientPlan(stalls=(verify.Stall(0.05, 2.0),))
    result: list[verify.Report] = []
    worker = threading.Thread(
        target=lambda: result.append(verify.backpressure(server.export("d", fmt), plan, token=TOKEN))
    )
    worker.start()
    time.sleep(0.8)
    change()  # type: ignore[operator]
    worker.join(timeout=60)
    return result[0]


def _aborted_line(server: Server) -> tuple[int, int, int]:
    wait_for_log(server, "stream aborted")
    match = re.search(r"stream aborted after (\d+) of (\d+) bytes \((\d+) bytes short\)", server.log.read_text())
    assert match, server.log.read_text()[-2000:]
    sent, length, short = (int(g) for g in match.groups())
    return sent, length, short


def test_an_in_place_overwrite_during_an_export_cuts_it(tmp_path: Path, servers: list[Server]) -> None:
    disk = random_disk(tmp_path / "d.raw", 64 * MiB)
    server = start_server(tmp_path, {"d": disk})
    servers.append(server)

    def overwrite() -> None:
        with open(disk, "r+b") as f:  # same size, new bytes: a torn image if the stream went on
            f.seek(40 * MiB)
            f.write(os.urandom(MiB))

    report = _export_while(server, "raw", overwrite)
    assert report.outcome == "truncated", report
    assert report.content_length is not None and report.bytes_received < report.content_length
    sent, length, short = _aborted_line(server)
    assert "the disk was written to during the export" in server.log.read_text()
    assert (sent, length, short) == (report.bytes_received, report.content_length, length - sent)


def test_a_disk_truncated_during_a_vhd_export_logs_the_real_shortfall(tmp_path: Path, servers: list[Server]) -> None:
    disk = random_disk(tmp_path / "d.raw", 64 * MiB)
    server = start_server(tmp_path, {"d": disk})
    servers.append(server)
    report = _export_while(server, "vhd", lambda: os.truncate(disk, 16 * MiB))
    assert report.outcome == "truncated", report
    sent, length, short = _aborted_line(server)
    assert short == length - sent > 32 * MiB, "the log must give the whole shortfall, not one block's"
    assert (sent, length) == (report.bytes_received, report.content_length)
