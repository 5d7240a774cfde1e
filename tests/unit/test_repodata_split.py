"""How ``build_repodata`` splits the packages to read between itself and its forked readers,
and what its XML writers leave behind when they fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xcpbuild.adapters import createrepo


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (2, 1), (4, 3), (64, 7)])
def test_one_reader_per_core_beyond_this_process(monkeypatch: pytest.MonkeyPatch, cores: int, expected: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert createrepo._worker_count(createrepo.PARALLEL_MIN) == expected
    assert createrepo._worker_count(createrepo.PARALLEL_MIN - 1) == 0  # a few packages never pay a fork


def test_this_process_reads_somewhat_less_than_one_reader() -> None:
    # It also dumps and compresses every package, so it takes under half with one reader.
    own = createrepo._own_share(2000, 0, 1)
    assert 800 < own < 1000
    assert createrepo._own_share(2000, 0, 3) < own / 1.5
    # Readers that compress their own slices do the same work per package as this process.
    assert createrepo._own_share(2000, 0, 1, readers_compress=True) in {999, 1000}
    assert createrepo._own_share(2000, 0, 3, readers_compress=True) in {499, 500}


def test_reused_packages_shift_reading_to_the_readers() -> None:
    shares = [createrepo._own_share(1000, reused, 1) for reused in (0, 500, 2000, 100_000)]
    assert shares == sorted(shares, reverse=True)
    assert shares[0] > shares[1] > 0
    assert shares[-1] == 0


@pytest.mark.parametrize(("to_read", "reused", "workers"), [(0, 0, 1), (1, 0, 1), (150, 0, 7), (10, 10_000, 2)])
def test_the_share_is_within_what_there_is_to_read(to_read: int, reused: int, workers: int) -> None:
    assert 0 <= createrepo._own_share(to_read, reused, workers) <= to_read


def test_unfinished_xml_files_are_removed_and_foreign_ones_kept(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), createrepo._XmlFiles(tmp_path, 3):
        assert sorted(path.name for path in tmp_path.iterdir()) == [
            "filelists.xml.gz",
            "other.xml.gz",
            "primary.xml.gz",
        ]
        raise RuntimeError("stopped half-way")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "filelists.xml.gz").write_text("someone else's")
    with pytest.raises(OSError, match="exists"):
        createrepo._XmlFiles(tmp_path, 3)
    assert [path.name for path in tmp_path.iterdir()] == ["filelists.xml.gz"]  # primary's removed, this one kept
    assert (tmp_path / "filelists.xml.gz").read_text() == "someone else's"
