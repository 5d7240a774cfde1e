"""Run a probe driver and face it with a stalled client, inside the probe container.

This file is copied into the probe container and run there with the image's
python3 (standard library only; nothing of xcpbuild is installed there). The
container has no network but loopback, so the driver and this client meet on
127.0.0.1 inside it. It prints one JSON document on stdout; xcpbuild judges it.

    python3 probe_runner.py --ready probe-ready --port 8080 --file disk.img \
        --stall 30 --throttle-kib-s 4096 -- ./probe_driver 8080 disk.img 3

Runs, in this order (the driver serves exactly one request per run): ``raw``
(read as fast as possible), ``throttle`` (read at a fixed rate for a few
seconds), ``stall`` (read 1 MiB, stop reading for --stall seconds, read the
rest). The stall comes last because it is the one that kills a broken driver.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from typing import Any

RCVBUF = 64 * 1024  # a small receive buffer so the server's send buffer fills soon after a pause
HEAD_LIMIT = 64 * 1024
THROTTLE_SECONDS = 4.0
STALL_AFTER = 1 << 20


def _read_head(sock: socket.socket) -> tuple[int, int | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed before the response head ended ({len(data)} bytes)")
        data += chunk
        if len(data) > HEAD_LIMIT:
            raise ConnectionError("response head longer than 64 KiB")
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return status, length, body


def one_run(port: int, name: str, stall: float, throttle_bytes_s: int, timeout: float) -> dict[str, Any]:
    """One GET: returns what arrived (bytes, sha256) and any error, never raises."""
    result: dict[str, Any] = {
        "name": name,
        "stall": stall,
        "status": None,
        "content_length": None,
        "bytes": 0,
        "sha256": None,
        "seconds": 0.0,
        "error": None,
    }
    digest = hashlib.sha256()
    start = time.monotonic()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET /probe HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            status, length, body = _read_head(sock)
            result["status"], result["content_length"] = status, length
            got = len(body)
            digest.update(body)
            stalled = stall <= 0
            throttle_until = time.monotonic() + THROTTLE_SECONDS if throttle_bytes_s > 0 else 0.0
            while length is None or got < length:
                if not stalled and got >= STALL_AFTER:
                    time.sleep(stall)
                    stalled = True
                now = time.monotonic()
                if now < throttle_until:
                    chunk = sock.recv(min(64 * 1024, throttle_bytes_s // 10 or 1))
                    time.sleep(len(chunk) / throttle_bytes_s)
                else:
                    chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
                digest.update(chunk)
            result["bytes"] = got
            if length is not None and got < length:
                result["error"] = f"the body ended after {got} of {length} bytes"
    except (OSError, ValueError, IndexError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["bytes"] = result["bytes"] or 0
    result["sha256"] = digest.hexdigest()
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ready", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stall", type=float, required=True)
    parser.add_argument("--throttle-kib-s", type=int, default=4096)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--stderr-file", default="driver.stderr")
    parser.add_argument("driver", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    driver = [a for a in args.driver if a != "--"]
    report: dict[str, Any] = {"ready": False, "runs": [], "driver_exit": None, "driver_stdout": "", "driver_stderr": ""}
    with open(args.stderr_file, "wb") as err:
        proc = subprocess.Popen(driver, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    out_lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            out_lines.append(line)
            if line.startswith(args.ready):
                ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while not ready.is_set() and proc.poll() is None and time.monotonic() < deadline:
        ready.wait(0.05)
    report["ready"] = ready.is_set()
    if ready.is_set():
        plan = (("raw", 0.0, 0), ("throttle", 0.0, args.throttle_kib_s * 1024), ("stall", args.stall, 0))
        for name, stall, rate in plan:
            if proc.poll() is not None:
                report["runs"].append({"name": name, "stall": stall, "error": "not run: the driver had exited"})
                continue
            report["runs"].append(one_run(args.port, name, stall, rate, args.timeout))
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(timeout=5)
    report["driver_exit"] = proc.returncode
    report["driver_stdout"] = "\n".join(out_lines)
    with open(args.stderr_file, "rb") as err_in:
        report["driver_stderr"] = err_in.read().decode(errors="replace")
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
