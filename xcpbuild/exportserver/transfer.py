"""Write an export to a client socket: bytes by send, disk data by zero-copy sendfile.

The socket is non-blocking. What happens when it is full (EAGAIN) is the whole
point of this server, and is decided by the EAGAIN policy:

- ``wait`` (the fix): wait until the socket is writable again, with no timer and
  no attempt limit. Only an explicit idle timeout (off by default) may end a
  stream whose client stopped reading.
- ``legacy-retry`` (vhd-tool 0.20.0, kept to show the regression): sleep, retry,
  and after ATTEMPTS consecutive EAGAINs give up and abort the stream.

Nothing is buffered here beyond one small structure, so memory stays flat while
a client stalls: the kernel's socket buffers are the only queue.
"""

import enum
import errno
import os
import re
import select
import socket
import time
from typing import NamedTuple, Optional, Union

# One sendfile call moves at most this much. Calls of a socket buffer's order
# (nginx's sendfile_max_chunk default) interleave with the reader; 1 GiB calls
# measured 0.8x nginx on 2 cores, 2 MiB calls 1.1-1.4x (benchmarks/export_throughput.py).
MAX_SENDFILE = 2 << 20
_ZEROS = bytes(64 * 1024)
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.EBADF)


class ClientGone(Exception):
    """The client closed or reset the connection."""


class IdleTimeout(Exception):
    """The client read nothing for longer than the configured idle timeout."""


class StreamAborted(Exception):
    """The server gave up on the stream (legacy policy), as vhd-tool 0.20.0 did."""


class EagainMode(enum.Enum):
    """What the server does when the client's socket is full."""

    WAIT = "wait"  # the fix: wait for writability, no timer
    LEGACY_RETRY = "legacy-retry"  # vhd-tool 0.20.0: sleep, retry, give up


class EagainPolicy(NamedTuple):
    mode: EagainMode = EagainMode.WAIT
    attempts: int = 20
    delay: float = 0.1

    @property
    def legacy(self) -> bool:
        return self.mode is EagainMode.LEGACY_RETRY

    def describe(self) -> str:
        if self.legacy:
            return f"legacy-retry ({self.attempts} attempts, {self.delay:g} s apart: vhd-tool 0.20.0's bug)"
        return "wait (for writability; no timer)"

    @classmethod
    def parse(cls, text: str) -> "EagainPolicy":
        """``wait``, ``legacy-retry`` or ``legacy-retry:ATTEMPTS:SECONDS``; ValueError otherwise."""
        if text == EagainMode.WAIT.value:
            return cls(EagainMode.WAIT)
        match = re.fullmatch(r"legacy-retry(?::(\d+):(\d+(?:\.\d+)?))?", text)
        if not match:
            raise ValueError(f"unknown EAGAIN policy {text!r}: use wait, legacy-retry or legacy-retry:ATTEMPTS:SECONDS")
        if match.group(1) is None:
            return cls(EagainMode.LEGACY_RETRY)
        attempts, delay = int(match.group(1)), float(match.group(2))
        if attempts < 0 or delay <= 0:
            raise ValueError("legacy-retry needs ATTEMPTS >= 0 and SECONDS > 0")
        return cls(EagainMode.LEGACY_RETRY, attempts, delay)


class Sender:
    """Writes one response to a non-blocking socket under an EAGAIN policy, counting bytes sent."""

    def __init__(self, sock: socket.socket, policy: EagainPolicy, idle_timeout: Optional[float] = None) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._policy = policy
        self._idle_ms = None if idle_timeout is None else max(1, int(idle_timeout * 1000))
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLOUT)
        self.sent = 0

    def _wait_writable(self) -> None:
        # Readiness, not time: this blocks for as long as the client keeps its window shut.
        if not self._poll.poll(self._idle_ms):
            raise IdleTimeout(f"client read nothing for {self._idle_ms} ms")

    def send_bytes(self, data: Union[bytes, memoryview], more: bool = False) -> None:
        """Send small metadata; ``more`` tells the kernel file data follows (no lone small segment)."""
        view = memoryview(data)
        flags = socket.MSG_MORE if more else 0
        while view:
            try:
                n = self._sock.send(view, flags)
            except BlockingIOError:
                self._wait_writable()
                continue
            except OSError as exc:
                if exc.errno in _GONE:
                    raise ClientGone(str(exc)) from exc
                raise
            view = view[n:]
            self.sent += n

    def send_zeros(self, count: int) -> None:
        while count:
            n = min(count, len(_ZEROS))
            self.send_bytes(memoryview(_ZEROS)[:n], more=True)
            count -= n

    def send_file(self, fd: int, offset: int, count: int, *, disk_data: bool = True) -> None:
        """Copy ``count`` bytes of ``fd`` from ``offset`` to the socket with sendfile(2).

        ``disk_data=False`` is for stream metadata kept in a file: like ``send_bytes`` it
        waits for writability under every policy (vhd-tool's retry budget was on disk data).
        """
        legacy = disk_data and self._policy.legacy
        failures = 0
        while count:
            try:
                n = os.sendfile(self._fd, fd, offset, min(count, MAX_SENDFILE))
            except BlockingIOError:
                if not legacy:
                    self._wait_writable()
                    continue
                # vhd-tool 0.20.0's _sendfile: sleep and retry, give up after N consecutive EAGAINs.
                if failures >= self._policy.attempts:
                    raise StreamAborted(
                        'Unix.Unix_error(Unix.EAGAIN, "sendfile", "") after '
                        f"{failures} retries {self._policy.delay:g} s apart"
                    ) from None
                failures += 1
                time.sleep(self._policy.delay)
                continue
            except OSError as exc:
                if exc.errno in _GONE:
                    raise ClientGone(str(exc)) from exc
                raise
            if n == 0:
                raise StreamAborted(f"the disk ended early, {count} bytes short (was it truncated while serving?)")
            failures = 0
            offset += n
            count -= n
            self.sent += n
