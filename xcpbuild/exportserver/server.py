"""The listening socket, one thread per export, and the response each request gets."""

import os
import selectors
import socket
import tempfile
import threading
import time
import uuid
from typing import Dict, Optional, Sequence, Tuple, Union

from xcpbuild import vhd
from xcpbuild.errors import ServerError
from xcpbuild.exportserver import delta
from xcpbuild.exportserver.disk import Disk, allocated_blocks, disk_size
from xcpbuild.exportserver.request import MAX_HEAD_BYTES, MAX_REQUEST_LINE, HttpError, parse_head, route
from xcpbuild.exportserver.transfer import ClientGone, EagainPolicy, IdleTimeout, Sender, StreamAborted
from xcpbuild.log import get_logger

log = get_logger("exportserver")

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
# Connections being answered 503 at once; beyond this a connection is simply closed.
MAX_REFUSING = 16
CONTENT_TYPES = {"raw": "application/octet-stream", "vhd": "application/vhd"}


def _bitmap_file() -> int:
    """A descriptor holding one all-ones VHD bitmap, for sendfile: a memfd where Python has it."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("vhd-bitmap", os.MFD_CLOEXEC)  # novermin (guarded: 3.8+)
    else:  # Python 3.6/3.7 (XCP-ng dom0): an unlinked temporary file serves the same
        fd, name = tempfile.mkstemp(prefix="xcp-export-bitmap-")
        os.unlink(name)  # noqa: PTH108 (pathlib's unlink adds nothing to a bare name)
    os.write(fd, vhd.FULL_BITMAP)
    return fd


def _response_head(status: int, headers: Sequence[Tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ExportServer:
    """Serves the configured disks on ``/export_raw_vdi`` until ``shutdown`` is called."""

    def __init__(
        self,
        disks: Sequence[Disk],
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        policy: Optional[EagainPolicy] = None,
        idle_timeout: Optional[float] = None,
        max_connections: int = 256,
        head_timeout: float = 30.0,
    ) -> None:
        if not disks:
            raise ServerError("no disk to serve", hint="pass --disk NAME=PATH at least once")
        names = [d.name for d in disks]
        if len(set(names)) != len(names):
            raise ServerError("a disk name is given twice", hint="each --disk NAME must be unique")
        if not token:
            raise ServerError("an empty token would let anyone in", hint="pass --token with a secret value")
        self.disks = {d.name: d for d in disks}
        self.token = token
        self.policy = policy or EagainPolicy()
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        try:
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            self._listener = socket.socket(family, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
            self._listener.listen(128)
        except OSError as exc:
            raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        bound = self._listener.getsockname()
        self.host, self.port = host, int(bound[1])
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._active: Dict[socket.socket, threading.Thread] = {}
        self._refusing = 0
        self._stopping = False
        self._change_maps = delta.ChangeMaps()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def shutdown(self) -> None:
        """Ask ``serve_forever`` to return (safe from a signal handler)."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def serve_forever(self) -> None:
        log.info("serving %s on %s, EAGAIN policy %s", ", ".join(self.disks), self.url, self.policy.describe())
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fileobj is self._listener and not self._stopping:
                        self._accept()
        self._close()

    def _accept(self) -> None:
        try:
            conn, address = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        peer = f"{address[0]}:{address[1]}"
        with self._lock:
            busy = len(self._active) >= self.max_connections
            refusing = busy and self._refusing < MAX_REFUSING
            if refusing:
                self._refusing += 1
            target = self._refuse if busy else self._handle
            thread = threading.Thread(target=target, args=(conn, peer), daemon=True)
            if not busy:
                self._active[conn] = thread
        if busy and not refusing:
            conn.close()  # flooded: not even a 503
            return
        thread.start()

    def _refuse(self, conn: socket.socket, peer: str) -> None:
        """Answer 503 after reading the request (closing on an unread request would reset the connection)."""
        log.warning("refusing %s: %d exports already running", peer, self.max_connections)
        try:
            self._read_head(conn, timeout=2.0)
        except (OSError, HttpError):
            pass
        try:
            self._answer_and_linger(conn, HttpError(503, "too many exports at once"))
        finally:
            conn.close()
            with self._lock:
                self._refusing -= 1

    def _close(self) -> None:
        self._listener.close()
        with self._lock:
            active = dict(self._active)
        for conn in active:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a thread waiting for writability
            except OSError:
                pass
        for thread in active.values():
            thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)
        log.info("stopped (%d export(s) were cut short)", len(active))

    def _read_head(self, conn: socket.socket, timeout: Optional[float] = None) -> Optional[bytes]:
        conn.settimeout(timeout or self.head_timeout)
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEAD_BYTES:
                first = data.split(b"\r\n", 1)
                raise HttpError(414 if len(first) == 1 and len(data) > MAX_REQUEST_LINE else 431, "request too large")
            chunk = conn.recv(4096)
            if not chunk:
                return None
            data += chunk
        return data.split(b"\r\n\r\n", 1)[0]

    @classmethod
    def _answer_and_linger(cls, conn: socket.socket, err: HttpError) -> None:
        """Send an error, then read what the client still sends for a moment before closing.

        Closing with unread request bytes makes the kernel reset the connection, which can
        destroy the response before the client reads it (nginx's lingering close, in short).
        """
        try:
            conn.settimeout(5)
            conn.sendall(cls._error_response(err))
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(1)
            drained = 0
            while drained < 1024 * 1024:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    @staticmethod
    def _error_response(err: HttpError) -> bytes:
        body = f"{err.status} {err.reason}\n".encode()
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        if err.status == 401:
            headers.append(("WWW-Authenticate", 'Cookie realm="xapi", cookie-name="session_id"'))
        headers.append(("Connection", "close"))
        return _response_head(err.status, headers) + body

    def _handle(self, conn: socket.socket, peer: str) -> None:
        try:
            head = self._read_head(conn)
            if head is None:
                return
            request = parse_head(head)
            export = route(request, self.disks, self.token)
            self._export(conn, peer, export.vdi, export.fmt, export.head_only, base=export.base)
        except HttpError as err:
            log.info("%s: %d %s", peer, err.status, err.reason)
            self._answer_and_linger(conn, err)
        except TimeoutError:
            log.info("%s: no complete request within %g s", peer, self.head_timeout)
        except OSError as exc:
            log.info("%s: connection error: %s", peer, exc)
        except Exception:
            log.exception("%s: unexpected failure", peer)
        finally:
            conn.close()
            with self._lock:
                self._active.pop(conn, None)

    def _export(
        self, conn: socket.socket, peer: str, name: str, fmt: str, head_only: bool, *, base: Optional[str] = None
    ) -> None:
        disk = self.disks[name]
        fd = os.open(disk.path, os.O_RDONLY | os.O_CLOEXEC)
        base_fd = None
        try:
            size = disk_size(fd)
            layout: Optional[Union[vhd.StreamLayout, delta.RawDelta]] = None
            if fmt == "vhd":
                try:
                    vhd.check_size(size)
                except vhd.VhdFormatError as exc:
                    raise HttpError(400, str(exc)) from None
            if base is not None:
                base_fd = os.open(self.disks[base].path, os.O_RDONLY | os.O_CLOEXEC)
                layout = self._delta(name, fd, size, fmt=fmt, base=base, base_fd=base_fd)
            elif fmt == "vhd":
                unique_id, timestamp = delta.vhd_identity(name, size, os.fstat(fd))
                layout = vhd.layout(size, allocated_blocks(fd, size, vhd.BLOCK_SIZE), timestamp, unique_id)
            length = layout.length if layout else size
            head = _response_head(
                200,
                [
                    ("Content-Length", str(length)),
                    ("Content-Type", CONTENT_TYPES[fmt]),
                    ("Content-Disposition", f'attachment; filename="{name}.{fmt}"'),
                    ("task-id", str(uuid.uuid4())),
                    ("Connection", "close"),
                ],
            )
            sender = Sender(conn, self.policy, self.idle_timeout)
            what = f"{peer} vdi={name} format={fmt}" + (f" base={base}" if base else "")
            if head_only:
                sender.send_bytes(head)
                return
            log.info("%s: exporting %d bytes", what, length)
            start = time.monotonic()
            try:
                if isinstance(layout, delta.RawDelta):
                    delta.send_raw_delta(sender, head, fd, layout)
                else:
                    self._stream(sender, head, fd, size, layout)
            except ClientGone as exc:
                sent = sender.sent - len(head)
                log.info("%s: client disconnected after %d of %d bytes (%s)", what, sent, length, exc)
                return
            except IdleTimeout as exc:
                log.warning("%s: idle timeout after %d of %d bytes: %s", what, sender.sent - len(head), length, exc)
                return
            except StreamAborted as exc:
                # What XAPI reported when vhd-tool 0.20.0 died on EAGAIN; the client sees a truncated body.
                log.error(
                    "%s: VDI_IO_ERROR(Device I/O errors): stream aborted after %d of %d bytes: %s",
                    what,
                    sender.sent - len(head),
                    length,
                    exc,
                )
                return
            log.info("%s: complete, %d bytes in %.2f s", what, length, time.monotonic() - start)
        finally:
            os.close(fd)
            if base_fd is not None:
                os.close(base_fd)

    def _delta(
        self, name: str, fd: int, size: int, *, fmt: str, base: str, base_fd: int
    ) -> Union[vhd.StreamLayout, delta.RawDelta]:
        """The body of a delta export: a differencing VHD, or XAPI's raw delta (zeros where equal)."""
        base_size = disk_size(base_fd)
        if base_size != size:
            raise HttpError(400, f"vdi {name} has {size} bytes and base {base} {base_size}; a delta needs equal sizes")
        start = time.monotonic()
        blocks, cached = self._change_maps.changed(fd, base_fd, size)
        log.info(
            "vdi=%s base=%s: %d of %d blocks differ (%s, %.2f s)",
            name,
            base,
            len(blocks),
            vhd.block_count(size),
            "change map reused" if cached else "scanned",
            time.monotonic() - start,
        )
        if fmt == "raw":
            return delta.RawDelta(size, blocks)
        unique_id, timestamp = delta.vhd_identity(name, size, os.fstat(fd))
        parent = delta.parent_of(base, size, os.fstat(base_fd))
        return vhd.delta_layout(size, blocks, parent, timestamp, unique_id)

    @staticmethod
    def _stream(sender: Sender, head: bytes, fd: int, size: int, layout: Optional[vhd.StreamLayout]) -> None:
        if layout is None:
            sender.send_bytes(head, more=True)
            sender.send_file(fd, 0, size)
            return
        # Each block's bitmap goes out by sendfile from a memfd, like the block after it, not by
        # send(): with a copied 512-byte piece before every spliced block, loopback exports fell
        # more often into a small-segment, CPU-bound TCP mode (0.79-0.81x raw; 0.87-1.12x this
        # way, same-process paired runs in benchmarks/README.md). Same bytes; the memfd is one page.
        bitmap = _bitmap_file()
        try:
            pending = head
            for piece in layout.pieces():
                if isinstance(piece, vhd.BlockRef):
                    sender.send_file(fd, piece.disk_offset, piece.length)
                    sender.send_zeros(piece.padding)
                elif piece == vhd.FULL_BITMAP:
                    if pending:
                        sender.send_bytes(pending, more=True)
                        pending = b""
                    sender.send_file(bitmap, 0, len(piece), disk_data=False)
                else:
                    pending += piece
            sender.send_bytes(pending)
        finally:
            os.close(bitmap)
