"""The timeline of a download: (seconds since start, bytes received so far) samples.

A report draws each trial from these, so they must keep the shape of the
transfer without one sample per ``recv``: a sample is kept at most every
``resolution`` seconds, but the last one before a pause (a stall, a server that
stopped sending) is always kept, so a flat stretch starts where it really did.
Plain tuples, no plotting: the verifier stays a standalone library.
"""

from __future__ import annotations

import time
from collections.abc import Callable

RESOLUTION = 0.02  # seconds: ~50 samples a second while data flows


class Timeline:
    """Cumulative bytes over time, thinned while data flows, exact around pauses."""

    def __init__(self, resolution: float = RESOLUTION, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start: float = self._clock()
        self._resolution = resolution
        self._bytes = 0
        self._samples: list[tuple[float, int]] = [(0.0, 0)]
        self._pending: tuple[float, int] | None = None  # the newest sample not kept yet

    def add(self, nbytes: int) -> None:
        """``nbytes`` more arrived now."""
        now = round(self._clock() - self._start, 4)
        self._bytes += nbytes
        last_kept = self._samples[-1][0]
        if self._pending is not None and now - self._pending[0] >= self._resolution:
            # A gap since the previous arrival: keep where the flat stretch began.
            self._samples.append(self._pending)
            last_kept = self._pending[0]
        self._pending = None
        if now - last_kept >= self._resolution:
            self._samples.append((now, self._bytes))
        else:
            self._pending = (now, self._bytes)

    def samples(self) -> list[tuple[float, int]]:
        """Every kept sample plus the newest one (the end of the stream)."""
        if self._pending is not None:
            return [*self._samples, self._pending]
        return list(self._samples)
