"""The reference export server as a real process, checked end to end by the verifier.

Each server is started as `python -m xcpbuild.exportserver --port 0` (or `xcpbuild serve`),
its real port parsed from the `listening on` line, and stopped by pid with SIGTERM, which
must shut it down cleanly (exit 0).
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT, need, need_tool
from xcpbuild import verifier as verify
from xcpbuild import vhd
from xcpbuild.adapters import process

MiB = 1024 * 1024
TOKEN = "t0ken-for-tests"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def export(self, vdi: str, fmt: str = "raw") -> str:
        return f"{self.url}/export_raw_vdi?vdi={vdi}&format={fmt}"

    def fds(self) -> int:
        return len(list(Path(f"/proc/{self.proc.pid}/fd").iterdir()))

    def threads(self) -> int:
        return len(list(Path(f"/proc/{self.proc.pid}/task").iterdir()))

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise


def start_server(tmp: Path, disks: dict[str, Path], *extra: str, entry: tuple[str, ...] = ()) -> Server:
    log = tmp / f"server-{len(list(tmp.glob('server-*')))}.log"
    argv = [sys.executable, "-m", *(entry or ("xcpbuild.exportserver",))]
    for name, path in disks.items():
        argv += ["--disk", f"{name}={path}"]
    argv += ["--host", "127.0.0.1", "--port", "0", "--token", TOKEN, *extra]
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline().decode().strip() if ready else ""
    if not line.startswith("listening on http://127.0.0.1:"):
        proc.kill()
        proc.wait()
        raise AssertionError(f"server did not start: {line!r} {log.read_text()}")
    return Server(proc, line.removeprefix("listening on "), log)


def wait_for_log(server: Server, text: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log.read_text():
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.05)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    codes = [s.stop() for s in started]
    assert codes == [0] * len(codes), "SIGTERM must stop the server cleanly"


def make_sparse_disk(path: Path) -> Path:
    """Holes, data at odd offsets, a fully written block, and a last partial block with data at its end."""
    size = 9 * MiB + 3 * 512  # 5 blocks, the last one 1 MiB + 1536 bytes
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in (
            (777, b"odd offset in block 0"),
            (2 * MiB - 3, b"straddles blocks 0 and 1"),
            (6 * MiB + 12345, os.urandom(3000)),  # block 3; block 2 stays a hole
            (size - 100, os.urandom(100)),  # the very end of the partial last block
        ):
            f.seek(offset)
            f.write(data)
    return path


def random_disk(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return path


def test_vhd_export_is_read_back_exactly_by_qemu_img_and_libvhdi(tmp_path: Path, servers: list[Server]) -> None:
    need_tool("qemu-img")
    try:
        import pyvhdi
    except ImportError:
        need(False, "libvhdi-python (pyvhdi)")
        raise
    disk = make_sparse_disk(tmp_path / "sparse.raw")
    size = disk.stat().st_size
    server = start_server(tmp_path, {"sparse": disk})
    servers.append(server)
    saved = tmp_path / "sparse.vhd"
    report = verify.backpressure(server.export("sparse", "vhd"), token=TOKEN, expect_disk=disk, save_to=saved)
    assert report.outcome == "complete" and report.match is True, report
    # Only the blocks holding data travel: 0, 1, 3 and 4 (block 2 is a hole).
    assert report.content_length == vhd.stream_length(size, 4) == saved.stat().st_size

    info = json.loads(process.run(["qemu-img", "info", "-f", "vpc", "--output", "json", saved]).stdout)
    assert info["virtual-size"] == size
    converted = tmp_path / "qemu.raw"
    process.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", saved, converted])
    assert converted.read_bytes() == disk.read_bytes()

    handle = pyvhdi.file()
    handle.open(str(saved))
    try:
        assert handle.get_media_size() == size
        assert handle.read_buffer(size) == disk.read_bytes()
    finally:
        handle.close()


def _cli_verify(url: str, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "xcpbuild", "-q", "verify", "backpressure", url, "--token", TOKEN, "--json", *args]
    return subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_pair(
    tmp_path: Path, servers: list[Server], plan_args: list[str]
) -> dict[tuple[str, str], tuple[int, dict[str, Any], str]]:
    disk = random_disk(tmp_path / "full.raw", 32 * MiB)
    wait = start_server(tmp_path, {"d": disk})
    legacy = start_server(tmp_path, {"d": disk}, "--eagain-policy", "legacy-retry")
    servers += [wait, legacy]
    runs = {
        (policy, fmt): _cli_verify(server.export("d", fmt), "--expect-disk", str(disk), *plan_args)
        for policy, server in (("wait", wait), ("legacy", legacy))
        for fmt in ("raw", "vhd")
    }
    results = {}
    for key, proc in runs.items():
        out, err = proc.communicate(timeout=120)
        results[key] = (proc.returncode, json.loads(out), err)
    legacy_log = legacy.log.read_text()
    assert "VDI_IO_ERROR" in legacy_log and 'Unix.Unix_error(Unix.EAGAIN, "sendfile", "")' in legacy_log
    assert "VDI_IO_ERROR" not in wait.log.read_text()
    return results


def _assert_fix_and_regression(results: dict[tuple[str, str], tuple[int, dict[str, Any], str]]) -> None:
    for fmt in ("raw", "vhd"):
        code, report, _ = results[("wait", fmt)]
        assert code == 0 and report["outcome"] == "complete" and report["match"] is True, report
        assert report["bytes_received"] == report["content_length"]
        code, report, err = results[("legacy", fmt)]
        assert code == 14, (code, report)
        assert report["outcome"] == "truncated" and report["match"] is False
        assert report["bytes_received"] < report["content_length"]
        assert "truncated" in err


def test_a_10s_stall_completes_with_wait_and_truncates_with_legacy_retry(tmp_path: Path, servers: list[Server]) -> None:
    results = _run_pair(tmp_path, servers, ["--stall", "10@0.3"])
    _assert_fix_and_regression(results)
    assert results[("wait", "raw")][1]["duration_s"] >= 10


def test_a_slow_reader_completes_with_wait_and_truncates_with_legacy_retry(
    tmp_path: Path, servers: list[Server]
) -> None:
    # 16 KiB/s frees less than a loopback segment's worth of window in the legacy 2 s budget.
    results = _run_pair(tmp_path, servers, ["--rate", "16384", "--rate-at", "0.2", "--rate-for", "6"])
    _assert_fix_and_regression(results)


def test_50_concurrent_exports_with_stalls_and_disconnects(tmp_path: Path, servers: list[Server]) -> None:
    disks = {
        "a": random_disk(tmp_path / "a.raw", 6 * MiB),
        "b": make_sparse_disk(tmp_path / "b.raw"),
        "c": random_disk(tmp_path / "c.raw", 4 * MiB + 512),
    }
    server = start_server(tmp_path, disks)
    servers.append(server)
    # Baseline once the server is surely in its accept loop (its selector exists).
    assert verify.backpressure(server.export("c"), token=TOKEN, expect_disk=disks["c"]).match is True
    fds_before, threads_before = server.fds(), server.threads()
    rng = random.Random(20180704)
    jobs = []
    for i in range(50):
        name = rng.choice(sorted(disks))
        fmt = rng.choice(["raw", "vhd"])
        stalls = tuple(verify.Stall(rng.random(), rng.uniform(0.1, 1.5)) for _ in range(rng.randint(0, 2)))
        disconnect = rng.uniform(0.05, 0.95) if i % 4 == 0 else None
        plan = verify.ClientPlan(stalls=stalls, disconnect_at=disconnect, rcvbuf=rng.choice([16384, 65536, None]))
        jobs.append((name, fmt, plan))

    def run(job: tuple[str, str, verify.ClientPlan]) -> verify.Report:
        name, fmt, plan = job
        return verify.backpressure(server.export(name, fmt), plan, token=TOKEN, expect_disk=disks[name])

    with ThreadPoolExecutor(max_workers=50) as pool:
        reports = list(pool.map(run, jobs))
    for (name, fmt, plan), report in zip(jobs, reports, strict=True):
        if plan.disconnect_at is not None:
            assert report.outcome == "disconnected", (name, fmt, report)
        else:
            assert report.outcome == "complete" and report.match is True, (name, fmt, report)
    assert sum(r.outcome == "complete" for r in reports) >= 35

    assert server.proc.poll() is None, "the server died"
    after = verify.backpressure(server.export("b", "vhd"), token=TOKEN, expect_disk=disks["b"])
    assert after.match is True
    deadline = time.monotonic() + 10
    while (server.fds(), server.threads()) != (fds_before, threads_before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.fds() == fds_before, "file descriptors leaked"
    assert server.threads() == threads_before, "export threads left behind"
    assert "client disconnected" in server.log.read_text()


MARKER = b"SECRET-DISK-BYTES!"


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_every_bad_request_gets_its_status_and_nothing_is_served(tmp_path: Path, servers: list[Server]) -> None:
    disk = tmp_path / "secret.raw"
    disk.write_bytes(MARKER * (MiB // len(MARKER)) + bytes(MiB - MiB // len(MARKER) * len(MARKER)))
    server = start_server(tmp_path, {"secret": disk}, entry=("xcpbuild", "serve"))  # the CLI wrapper
    servers.append(server)
    port = int(server.url.rsplit(":", 1)[1])
    q = f"session_id={TOKEN}&vdi=secret"
    cases = [
        (b"GET /export_raw_vdi?vdi=secret HTTP/1.1\r\nHost: x\r\n\r\n", 401),
        (b"GET /export_raw_vdi?vdi=secret&session_id=nope HTTP/1.1\r\nHost: x\r\n\r\n", 403),
        (b"GET /export_raw_vdi?vdi=secret HTTP/1.1\r\nHost: x\r\nCookie: session_id=nope\r\n\r\n", 403),
        (f"GET /export_raw_vdi?session_id={TOKEN}&vdi=missing HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 404),
        (f"GET /export_raw_vdi?session_id={TOKEN}&vdi={disk} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 404),
        (f"GET /export_raw_vdi?session_id={TOKEN}&vdi=../secret HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 404),
        (f"GET {disk}?{q} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 404),
        (f"GET /export_raw_vdi?{q}&format=qcow2 HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400),
        (f"POST /export_raw_vdi?{q} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 405),
        (f"GET /export_raw_vdi?{q} HTTP/1.1\r\nHost: x\r\nX: {'a' * 20000}\r\n\r\n".encode(), 431),
        (f"GET /export_raw_vdi?{q}{'&a=b' * 3000} HTTP/1.1\r\n\r\n".encode(), 414),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
    ]
    for request, status in cases:
        got, headers, body = _exchange(port, request)
        assert got == status, (request[:80], got, body)
        assert MARKER not in body and len(body) == int(headers["content-length"]) < 200
    # The good requests, for contrast: HEAD has the headers and no body; GET serves the disk.
    got, headers, body = _exchange(port, f"HEAD /export_raw_vdi?{q}&format=vhd HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert got == 200 and body == b"" and headers["content-type"] == "application/vhd"
    assert headers["content-disposition"] == 'attachment; filename="secret.vhd"'
    assert int(headers["content-length"]) == vhd.stream_length(MiB, 1)
    got, headers, body = _exchange(
        port, f"GET /export_raw_vdi?vdi=secret HTTP/1.1\r\nHost: x\r\nCookie: session_id={TOKEN}\r\n\r\n".encode()
    )
    assert got == 200 and headers["content-type"] == "application/octet-stream" and body == disk.read_bytes()
    assert headers["content-disposition"] == 'attachment; filename="secret.raw"'
    assert server.proc.poll() is None


def test_a_disconnect_mid_stream_is_logged_and_harmless(tmp_path: Path, servers: list[Server]) -> None:
    disk = random_disk(tmp_path / "d.raw", 16 * MiB)
    server = start_server(tmp_path, {"d": disk}, "--idle-timeout", "1")
    servers.append(server)
    report = verify.backpressure(server.export("d"), verify.ClientPlan(disconnect_at=0.4), token=TOKEN)
    assert report.outcome == "disconnected"
    # A client that stops reading past the (opt-in) idle timeout is cut off; one that reads completes.
    stalled = verify.backpressure(server.export("d"), verify.ClientPlan(stalls=(verify.Stall(0.2, 3),)), token=TOKEN)
    assert stalled.outcome == "truncated"
    assert verify.backpressure(server.export("d"), token=TOKEN, expect_disk=disk).match is True
    wait_for_log(server, "idle timeout")
    log = server.log.read_text()
    assert "client disconnected" in log and "idle timeout" in log


def _tls_relay(cert: Path, key: Path, backend_port: int) -> tuple[int, socket.socket]:
    """A TLS front for the export server (an XCP-ng host serves its exports over https)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                front = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            back = socket.create_connection(("127.0.0.1", backend_port))
            threading.Thread(target=pump, args=(front, back), daemon=True).start()
            threading.Thread(target=pump, args=(back, front), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1]), listener


def test_the_verifier_speaks_https_like_an_xcp_ng_host(tmp_path: Path, servers: list[Server]) -> None:
    need_tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    process.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]
    )  # fmt: skip
    disk = make_sparse_disk(tmp_path / "d.raw")
    server = start_server(tmp_path, {"d": disk})
    servers.append(server)
    port, listener = _tls_relay(cert, key, int(server.url.rsplit(":", 1)[1]))
    try:
        url = f"https://127.0.0.1:{port}/export_raw_vdi?vdi=d&format=vhd&session_id={TOKEN}"
        plan = verify.ClientPlan(stalls=(verify.Stall(0.5, 1.0),))
        report = verify.backpressure(url, plan, expect_disk=disk, insecure=True)
        assert report.outcome == "complete" and report.match is True, report
        assert verify.backpressure(url, expect_disk=disk, cafile=cert).match is True
        refused = verify.backpressure(url, expect_disk=disk)  # a self-signed certificate is not trusted by default
        assert refused.outcome == "error" and "certificate" in refused.detail.lower() and not refused.ok
        assert TOKEN not in report.url
    finally:
        listener.close()


def test_exports_beyond_the_connection_limit_get_503(tmp_path: Path, servers: list[Server]) -> None:
    disk = random_disk(tmp_path / "d.raw", 16 * MiB)
    server = start_server(tmp_path, {"d": disk}, "--max-connections", "1")
    servers.append(server)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as holder:  # an export whose client does not read
        holder.sendall(f"GET /export_raw_vdi?session_id={TOKEN}&vdi=d HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert holder.recv(12) == b"HTTP/1.1 200"
        status, _, body = _exchange(port, f"GET /export_raw_vdi?session_id={TOKEN}&vdi=d HTTP/1.1\r\n\r\n".encode())
        assert status == 503 and len(body) < 100
    wait_for_log(server, "client disconnected")
    report = verify.backpressure(server.export("d"), token=TOKEN, expect_disk=disk)  # the slot is free again
    assert report.match is True, report
