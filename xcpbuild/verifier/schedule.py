"""When the client misbehaves, and how long it may take: stalls, throttling, the disconnect, the deadline.

Each schedule answers two questions for the read loop: does something happen
at the byte just reached, and where is the next byte at which something
happens (so a read stops there and the event is not overshot). Positions are
bytes of the body, computed from fractions of the Content-Length; without a
length, stalls and throttling start at byte 0 and the disconnect never comes.

Time goes through a ``Clock`` so the pacing can be tested without waiting; the
``Deadline`` is itself a clock whose sleeps end where the deadline does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Monotonic time and real sleeps."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class DeadlinePassed(Exception):
    """The whole download took longer than its deadline."""


class Deadline:
    """The time the whole download may take, counted from its creation."""

    def __init__(self, seconds: float, clock: Clock | None = None) -> None:
        self.seconds = seconds
        self.clock = clock or SystemClock()
        self.end = self.clock.now() + seconds

    def now(self) -> float:
        return self.clock.now()

    def remaining(self) -> float:
        return max(0.0, self.end - self.clock.now())

    def check(self) -> None:
        if self.remaining() <= 0:
            raise DeadlinePassed()

    def timeout(self, limit: float) -> float:
        """A socket timeout: ``limit`` cut to what remains (never 0, which would make the socket non-blocking)."""
        remaining = self.remaining()
        if remaining <= 0:
            raise DeadlinePassed()
        return min(limit, remaining)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or until the deadline and raise DeadlinePassed when it comes first."""
        remaining = self.remaining()
        if seconds >= remaining:
            self.clock.sleep(remaining)
            raise DeadlinePassed()
        self.clock.sleep(seconds)


@dataclass(frozen=True)
class Stall:
    """Stop reading for ``seconds`` once ``at`` (a fraction of the body) has arrived."""

    at: float
    seconds: float


def point(fraction: float, total: int | None) -> int:
    """The byte of the body at ``fraction`` of ``total`` (0 when the length is unknown)."""
    return int(fraction * total) if total is not None else 0


class StallSchedule:
    """The planned stalls in body order; each happens once."""

    def __init__(self, stalls: Sequence[Stall], total: int | None, clock: Clock, events: list[str]) -> None:
        self._pending = sorted(((point(s.at, total), s) for s in stalls), key=lambda item: item[0])
        self._total = total
        self._clock = clock
        self._events = events

    def wait(self, received: int) -> None:
        """Sleep through every stall whose byte has been reached."""
        while self._pending and received >= self._pending[0][0]:
            _, stall = self._pending.pop(0)
            self._events.append(f"stalled {stall.seconds:g} s at byte {received}")
            self._clock.sleep(stall.seconds)

    def next_point(self, received: int) -> int | None:
        ahead = [at for at, _ in self._pending if at > received]
        return min(ahead) if ahead else None


class Disconnect:
    """Close the connection on purpose at a fraction of the body (only with a known length)."""

    def __init__(self, at: float | None, total: int | None) -> None:
        self.at = point(at, total) if at is not None and total is not None else None

    def reached(self, received: int) -> bool:
        return self.at is not None and received >= self.at

    def next_point(self, received: int) -> int | None:
        return self.at if self.at is not None and self.at > received else None


class Throttle:
    """Read at ``rate`` bytes a second from byte ``start`` on, for ``duration`` seconds (None: to the end).

    Reads are cut into slices of 1/SLICES_PER_SECOND of the rate, and each read
    waits until the bytes read since throttling began are due, so the average
    holds whatever the server's bursts.
    """

    SLICES_PER_SECOND = 20

    def __init__(self, rate: float, start: int, duration: float | None, clock: Clock, events: list[str]) -> None:
        self.rate = rate
        self.start = start
        self.duration = duration
        self._clock = clock
        self._events = events
        self._started: float | None = None
        self._paced = 0  # bytes read while throttled
        self._active = False

    def allowance(self, received: int) -> int | None:
        """Wait until the next read is due; the most it may read (None: not throttled now)."""
        self._active = False
        if received < self.start:
            return None
        now = self._clock.now()
        if self._started is None:
            self._started = now
            self._events.append(f"throttled to {self.rate:g} B/s at byte {received}")
        if self.duration is not None and now - self._started >= self.duration:
            return None
        due = self._started + self._paced / self.rate
        if due > now:
            self._clock.sleep(due - now)
        self._active = True
        return max(1, int(self.rate / self.SLICES_PER_SECOND))

    def took(self, n: int) -> None:
        """Count a read made under the allowance."""
        if self._active:
            self._paced += n

    def next_point(self, received: int) -> int | None:
        return self.start if self._started is None and self.start > received else None
