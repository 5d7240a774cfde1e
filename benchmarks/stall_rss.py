"""Server memory while clients stall: RSS growth of the export server during a long pause.

Usage: python3 benchmarks/stall_rss.py [--stall 60] [--clients 1] [--size-mib 512]

Baseline: the server's RSS when idle after a warm-up export, measured in the same
run. The clients read 10% of a VHD export, then stop reading for --stall seconds
(the socket buffers fill at once), then read to the end and check the byte count.
Target: growth <= 4 MiB.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from common import TOKEN, MiB, fetch, make_disk, rss_kib, start_export_server


def stalled_client(port: int, target: str, stall: float, started: threading.Barrier, result: list[int]) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
        got = len(rest)
        while got < length // 10:
            got += len(sock.recv(65536))
        started.wait()
        time.sleep(stall)
        while chunk := sock.recv(1 << 20):
            got += len(chunk)
        result.append(got - length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stall", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="xcpbuild-bench-", dir=args.workdir))
    server = None
    try:
        disk = make_disk(tmp / "disk.raw", args.size_mib * MiB)
        server, port = start_export_server({"disk": disk}, tmp / "server.log")
        target = f"/export_raw_vdi?session_id={TOKEN}&vdi=disk&format=vhd"
        fetch(port, target)  # warm-up: every code path loaded before the baseline
        time.sleep(0.5)
        baseline = rss_kib(server.pid)
        started = threading.Barrier(args.clients + 1)
        shortfalls: list[int] = []
        clients = [
            threading.Thread(target=stalled_client, args=(port, target, args.stall, started, shortfalls))
            for _ in range(args.clients)
        ]
        for client in clients:
            client.start()
        started.wait()
        peak = baseline
        end = time.monotonic() + args.stall
        while time.monotonic() < end:
            peak = max(peak, rss_kib(server.pid))
            time.sleep(0.25)
        for client in clients:
            client.join()
        growth = (peak - baseline) / 1024
        print(f"{args.clients} client(s) stalled {args.stall:g} s in a VHD export of a {args.size_mib} MiB disk")
        print(f"  server RSS idle (baseline) {baseline / 1024:.1f} MiB, peak during the stall {peak / 1024:.1f} MiB")
        complete = len(shortfalls) == args.clients and all(s == 0 for s in shortfalls)
        print(f"  every export complete after the stall: {complete}")
        print(f"RSS growth during the stall: {growth:.2f} MiB = {peak / baseline:.3f}x baseline  (target <= 4 MiB)")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
