"""Shared plumbing for the export benchmarks: test disks, servers started and stopped by pid, a client.

Every number a benchmark prints is measured in the same run as its baseline, with
the same client, on 127.0.0.1.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOKEN = "bench"
MiB = 1024 * 1024
GiB = 1024 * MiB


def make_disk(path: Path, size: int) -> Path:
    """A fully allocated file of incompressible data, then read once so it sits in the page cache."""
    chunk = os.urandom(64 * MiB)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
    warm(path)
    return path


def warm(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, 16 * MiB):
            pass
    finally:
        os.close(fd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A background process stopped by its pid (SIGTERM, then SIGKILL)."""

    def __init__(self, argv: list[str], log: Path, cwd: Path = ROOT) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def first_line(self, timeout: float = 20) -> str:
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"no output from {self.popen.args}; see {self.log}")
        return self.popen.stdout.readline().decode().strip()

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait()


def start_export_server(disks: dict[str, Path], log: Path, *extra: str) -> tuple[Proc, int]:
    argv = [sys.executable, "-m", "xcpbuild.exportserver", "--port", "0", "--token", TOKEN, *extra]
    for name, path in disks.items():
        argv += ["--disk", f"{name}={path}"]
    proc = Proc(argv, log)
    line = proc.first_line()
    if not line.startswith("listening on http://"):
        proc.stop()
        raise RuntimeError(f"export server did not start: {line!r}; see {log}")
    return proc, int(line.rsplit(":", 1)[1])


def fetch(port: int, target: str) -> tuple[int, float]:
    """GET target from 127.0.0.1:port, discarding the body; (body bytes, seconds from request to last byte)."""
    # Page-aligned, as the verifier's: a bytearray's malloc'd bytes, 16 bytes off a cache line,
    # take the kernel's copy 3-4x longer, so the client would be what is measured.
    view = memoryview(mmap.mmap(-1, 4 * MiB))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed before the response head")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise RuntimeError(f"HTTP {status.decode()} for {target}")
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        got = len(rest)
        while got < length:
            n = sock.recv_into(view)
            if not n:
                raise RuntimeError(f"truncated after {got} of {length} bytes")
            got += n
        return got, time.perf_counter() - start


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def median(values: list[float]) -> float:
    return statistics.median(values)


def trimmed_mean(values: list[float]) -> float:
    """Mean without the lowest and highest quarter: steadier than the median when runs are bimodal."""
    ordered = sorted(values)
    cut = len(ordered) // 4
    return statistics.mean(ordered[cut : len(ordered) - cut])
