"""The verifier's schedules on a fake clock: throttling paces reads, stalls and the deadline sleep as planned."""

from __future__ import annotations

import pytest

from tests.unit.hostile import HostileServer, http_head
from xcpbuild import verifier
from xcpbuild.verifier.schedule import Deadline, DeadlinePassed, Disconnect, Stall, StallSchedule, Throttle


class FakeClock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def _read(throttle: Throttle, clock: FakeClock, total: int, burst: int = 10_000) -> list[int]:
    """Read ``total`` bytes as a server that always has ``burst`` bytes ready; the sizes of the reads."""
    received, reads = 0, []
    while received < total:
        allowance = throttle.allowance(received)
        n = min(burst, total - received, allowance if allowance is not None else burst)
        throttle.took(n)
        received += n
        reads.append(n)
    return reads


def test_throttling_holds_the_rate_whatever_the_bursts() -> None:
    clock, events = FakeClock(), list[str]()
    throttle = Throttle(1000.0, 0, None, clock, events)
    reads = _read(throttle, clock, 5000)
    assert set(reads) == {50}  # a twentieth of the rate per read
    # the last read is due once 4950 bytes have passed at 1000 B/s
    assert clock.t - 100.0 == pytest.approx(4.95)
    assert events == ["throttled to 1000 B/s at byte 0"]


def test_throttling_starts_at_its_byte_and_ends_after_its_duration() -> None:
    clock, events = FakeClock(), list[str]()
    throttle = Throttle(1000.0, 3000, 2.0, clock, events)
    assert throttle.allowance(0) is None and throttle.next_point(0) == 3000
    reads = _read(throttle, clock, 3000 + 2000 + 10_000, burst=3000)
    assert reads[0] == 3000  # full speed up to the start
    assert reads[-1] > 50  # full speed again after 2 s
    assert clock.t - 100.0 == pytest.approx(2.0)
    assert events == ["throttled to 1000 B/s at byte 3000"]
    assert throttle.next_point(5000) is None


def test_stalls_happen_in_body_order_and_at_the_start_without_a_length() -> None:
    clock, events = FakeClock(), list[str]()
    stalls = StallSchedule([Stall(0.5, 2.0), Stall(0.1, 1.0)], 1000, clock, events)
    assert stalls.next_point(0) == 100
    stalls.wait(99)
    assert clock.slept == []
    stalls.wait(600)
    assert clock.slept == [1.0, 2.0] and stalls.next_point(600) is None
    unsized = StallSchedule([Stall(0.5, 3.0)], None, clock, events)
    unsized.wait(0)
    assert clock.slept[-1] == 3.0


def test_a_disconnect_needs_a_length() -> None:
    assert Disconnect(0.5, 1000).next_point(10) == 500 and Disconnect(0.5, 1000).reached(500)
    assert Disconnect(0.5, None).next_point(10) is None and not Disconnect(0.5, None).reached(10**9)


def test_the_deadline_cuts_sleeps_and_timeouts() -> None:
    clock = FakeClock()
    deadline = Deadline(5.0, clock)
    assert deadline.timeout(600.0) == 5.0
    deadline.sleep(3.0)
    assert deadline.timeout(1.0) == 1.0 and deadline.timeout(600.0) == pytest.approx(2.0)
    with pytest.raises(DeadlinePassed):
        deadline.sleep(10.0)
    assert clock.t == pytest.approx(105.0)
    with pytest.raises(DeadlinePassed):
        deadline.timeout(1.0)


def test_the_client_throttles_its_reads_of_a_real_socket() -> None:
    body = bytes(range(256)) * 1000  # 256000 bytes
    clock = FakeClock()

    with HostileServer(lambda: [http_head("200 OK", f"Content-Length: {len(body)}") + body]) as server:
        plan = verifier.ClientPlan(rate=64_000.0, rate_at=0.5, rcvbuf=None)
        report = verifier.backpressure(server.url(), plan, expect_size=len(body), clock=clock)
    assert report.outcome == "complete" and report.bytes_received == len(body), report.detail
    assert report.events == [f"throttled to 64000 B/s at byte {len(body) // 2}"]
    # the second half at 64000 B/s: 2 s of (fake) waiting, give or take one slice
    assert sum(clock.slept) == pytest.approx(2.0, abs=0.06)
