"""A hostile HTTP server for the verifier's tests: plays a scripted answer on 127.0.0.1, then hangs up.

An answer is a fresh iterable for each connection of bytes to send and floats
(seconds to pause), so it can trickle, stall or never end. Every connection
lives at most ``lifetime`` seconds and every pause ends when the server stops,
so no test can hang on it; threads are joined on exit.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType

Answer = Callable[[], Iterable[bytes | float]]


def http_head(status: str = "200 OK", *headers: str) -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode("latin-1")


class HostileServer:
    def __init__(self, answer: Answer, *, lifetime: float = 30.0, read_request: bool = True) -> None:
        self.answer = answer
        self.lifetime = lifetime
        self.read_request = read_request
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []

    def url(self, path: str = "/export_raw_vdi?vdi=d", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> HostileServer:
        self.listener.settimeout(0.2)
        accepting = threading.Thread(target=self._accept, daemon=True)
        accepting.start()
        self.threads.append(accepting)
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop.set()
        for thread in list(self.threads):
            thread.join(timeout=5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            serving = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            serving.start()
            self.threads.append(serving)

    def _serve(self, conn: socket.socket) -> None:
        end = time.monotonic() + self.lifetime
        with conn:
            conn.settimeout(2.0)
            try:
                request = b""
                while self.read_request and b"\r\n\r\n" not in request and len(request) < 65536:
                    data = conn.recv(4096)
                    if not data:
                        return
                    request += data
                for item in self.answer():
                    if self.stop.is_set() or time.monotonic() > end:
                        return
                    if isinstance(item, float):
                        self.stop.wait(min(item, max(0.0, end - time.monotonic())))
                    else:
                        conn.sendall(item)
            except OSError:
                return  # the client hung up: what a verifier giving up does
