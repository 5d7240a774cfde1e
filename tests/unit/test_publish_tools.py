"""Logic around the publish tools: how rpmsign/rpmkeys work is cut into batches, how dnf's test transaction is read."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from xcpbuild.adapters import dnf, rpmsign
from xcpbuild.errors import SigningError


def paths(count: int) -> list[Path]:
    return [Path(f"p{i:05d}.rpm") for i in range(count)]


@pytest.mark.parametrize(("count", "workers"), [(1, 2), (3, 2), (2000, 2), (2000, 1), (401, 4), (7, 16)])
def test_batches_cover_every_file_once_in_order(count: int, workers: int) -> None:
    batches = rpmsign._batches(paths(count), workers)
    assert [p for batch in batches for p in batch] == paths(count)
    assert all(0 < len(batch) <= rpmsign._BATCH for batch in batches)
    assert len(batches) >= min(count, workers)  # every core gets work when there is enough


def test_each_batch_runs_side_by_side_and_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpmsign, "_workers", lambda: 2)
    running, peak, lock = [0], [0], threading.Lock()

    def work(batch: list[Path]) -> list[Path]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return batch

    results = rpmsign._each_batch(paths(10), work)
    assert [p for batch in results for p in batch] == paths(10)
    assert peak[0] == 2


def test_each_batch_raises_the_first_failure_and_starts_nothing_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpmsign, "_workers", lambda: 2)
    monkeypatch.setattr(rpmsign, "_BATCH", 1)
    started: list[Path] = []

    def work(batch: list[Path]) -> None:
        started.extend(batch)
        if batch[0].name == "p00000.rpm":
            raise SigningError("bad key")
        time.sleep(0.05)

    with pytest.raises(SigningError, match="bad key"):
        rpmsign._each_batch(paths(50), work)
    assert len(started) < 50


def test_check_failure_names_the_stage_and_the_first_reasons() -> None:
    detail = [f"Package p{i}-1-1.noarch.rpm is not signed" for i in range(5)]
    line = dnf.check_failure("signature", detail)
    assert line.startswith("GPG check FAILED: Package p0-1-1.noarch.rpm is not signed; ")
    assert "p2-1-1" in line and "p3-1-1" not in line and line.endswith("(and 2 more)")
    assert dnf.check_failure("resolve", []) == "resolving failed: no detail"
