"""The listening socket, one thread per export, and the response each request gets."""

import errno
import os
import selectors
import socket
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple, Union

from xcpbuild import vhd
from xcpbuild.errors import ServerError
from xcpbuild.exportserver import delta
from xcpbuild.exportserver.disk import Disk, DiskChanged, DiskWatch, allocated_blocks, disk_size, open_disk
from xcpbuild.exportserver.request import Export, HttpError, complete_head, parse_head, route
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
# Connections being answered an error (or 503) at once; beyond this a connection is simply closed.
MAX_ANSWERING = 16
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


class _PendingHead:
    """A connection whose request head is still arriving: read by the accept loop, not a thread."""

    __slots__ = ("conn", "data", "deadline", "peer")

    def __init__(self, conn: socket.socket, peer: str, deadline: float) -> None:
        self.conn = conn
        self.peer = peer
        self.deadline = deadline  # the whole head must have arrived by then, however it trickles
        self.data = b""


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
        max_pending_heads: int = 512,
    ) -> None:
        """``max_connections`` bounds exports being served; connections still sending their
        request head are bounded apart (``max_pending_heads``, oldest shed first) and get
        ``head_timeout`` seconds in all to send it."""
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
        self.max_pending_heads = max_pending_heads
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
        self._answering = 0
        self._heads: Dict[socket.socket, _PendingHead] = OrderedDict()  # oldest first (3.6: dict order is not promised)
        self._selector = selectors.DefaultSelector()
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
        selector = self._selector
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        while not self._stopping:
            for key, _ in selector.select(self._until_next_deadline()):
                if self._stopping:
                    break
                if key.fileobj is self._listener:
                    self._accept()
                elif isinstance(key.data, _PendingHead):
                    self._receive(key.data)
            self._expire_heads()
        self._close()

    def _until_next_deadline(self) -> Optional[float]:
        oldest = next(iter(self._heads.values()), None)  # accepted first, so its deadline is first
        return None if oldest is None else max(0.0, oldest.deadline - time.monotonic())

    def _accept(self) -> None:
        try:
            conn, address = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                raise
            # Out of descriptors: incomplete heads go first; exports in flight are never cut for this.
            if not self._shed_oldest_head(f"out of file descriptors ({exc.strerror})"):
                log.warning("cannot accept: %s", exc.strerror)
                time.sleep(0.1)
            return
        conn.setblocking(False)
        if len(self._heads) >= self.max_pending_heads:
            self._shed_oldest_head(f"{len(self._heads)} request heads are already arriving")
        pending = _PendingHead(conn, f"{address[0]}:{address[1]}", time.monotonic() + self.head_timeout)
        self._heads[conn] = pending
        self._selector.register(conn, selectors.EVENT_READ, pending)

    def _forget_head(self, pending: _PendingHead) -> None:
        self._heads.pop(pending.conn, None)
        try:
            self._selector.unregister(pending.conn)
        except (KeyError, ValueError):
            pass

    def _shed_oldest_head(self, why: str) -> bool:
        oldest = next(iter(self._heads.values()), None)
        if oldest is None:
            return False
        log.warning("%s: closed before its request was complete: %s", oldest.peer, why)
        self._forget_head(oldest)
        oldest.conn.close()
        return True

    def _expire_heads(self) -> None:
        now = time.monotonic()
        while self._heads:
            oldest = next(iter(self._heads.values()))
            if oldest.deadline > now:
                return
            log.info("%s: no complete request within %g s", oldest.peer, self.head_timeout)
            self._forget_head(oldest)
            try:  # best effort, never blocking the accept loop
                oldest.conn.send(self._error_response(HttpError(408, "no complete request in time")))
            except OSError:
                pass
            oldest.conn.close()

    def _receive(self, pending: _PendingHead) -> None:
        """Read what a connection sent of its head; start its answer once the head is whole."""
        if pending.conn not in self._heads:
            return  # shed earlier in this round
        try:
            chunk = pending.conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.info("%s: connection error: %s", pending.peer, exc)
            chunk = b""
        if not chunk:
            self._forget_head(pending)
            pending.conn.close()  # closed before sending a whole request: nothing to answer
            return
        pending.data += chunk
        try:
            head = complete_head(pending.data)
        except HttpError as err:
            self._forget_head(pending)
            self._answer(pending.conn, pending.peer, err)
            return
        if head is not None:
            self._forget_head(pending)
            self._start(pending.conn, pending.peer, head)

    def _start(self, conn: socket.socket, peer: str, head: bytes) -> None:
        """Route a complete request; only requests being served count against the export limit."""
        try:
            export = route(parse_head(head), self.disks, self.token)
        except HttpError as err:
            self._answer(conn, peer, err)
            return
        with self._lock:
            busy = len(self._active) >= self.max_connections
            if not busy:
                thread = threading.Thread(target=self._handle, args=(conn, peer, export), daemon=True)
                self._active[conn] = thread
        if busy:
            log.warning("refusing %s: %d exports already running", peer, self.max_connections)
            self._answer(conn, peer, HttpError(503, "too many exports at once"))
            return
        thread.start()

    def _answer(self, conn: socket.socket, peer: str, err: HttpError) -> None:
        """Answer an error from a thread of its own (lingering must not hold up the accept loop)."""
        if err.status != 503:
            log.info("%s: %d %s", peer, err.status, err.reason)
        with self._lock:
            answering = self._answering < MAX_ANSWERING
            if answering:
                self._answering += 1
        if not answering:
            conn.close()  # flooded with bad requests: not even an answer
            return
        threading.Thread(target=self._answer_thread, args=(conn, err), daemon=True).start()

    def _answer_thread(self, conn: socket.socket, err: HttpError) -> None:
        try:
            self._answer_and_linger(conn, err)
        finally:
            conn.close()
            with self._lock:
                self._answering -= 1

    def _close(self) -> None:
        self._listener.close()
        for pending in list(self._heads.values()):
            pending.conn.close()
        self._heads.clear()
        self._selector.close()
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

    def _handle(self, conn: socket.socket, peer: str, export: Export) -> None:
        try:
            self._export(conn, peer, export.vdi, export.fmt, export.head_only, base=export.base)
        except HttpError as err:
            log.warning("%s: %d %s", peer, err.status, err.reason)
            self._answer_and_linger(conn, err)
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
        fd = open_disk(disk)
        base_fd = None
        try:
            watch = DiskWatch(fd)
            size = disk.size
            layout: Optional[Union[vhd.StreamLayout, delta.RawDelta]] = None
            if fmt == "vhd":
                try:
                    vhd.check_size(size)
                except vhd.VhdFormatError as exc:
                    raise HttpError(400, str(exc)) from None
            if base is not None:
                base_fd = open_disk(self.disks[base])
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
            sender = Sender(conn, self.policy, self.idle_timeout, watch=watch.check)
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
            except (StreamAborted, DiskChanged) as exc:
                # What XAPI reports when vhd-tool dies mid-export (on EAGAIN in 0.20.0, or on a disk
                # that changed under it): the client sees a truncated body, never a torn image.
                sent = max(0, sender.sent - len(head))
                log.error(
                    "%s: VDI_IO_ERROR(Device I/O errors): stream aborted after %d of %d bytes (%d bytes short): %s",
                    what,
                    sent,
                    length,
                    length - sent,
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
            # The last byte waits for the disk watch's look after the rest, so a disk written to
            # during the export is cut short rather than delivered whole but torn.
            sender.send_file(fd, 0, max(0, size - 1))
            sender.send_file(fd, max(0, size - 1), min(1, size))
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
