"""Changed-block finding of delta exports: holes in both are skipped, the rest compared block by block."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xcpbuild import vhd
from xcpbuild.exportserver import delta

MiB = 1024 * 1024
BLOCK = vhd.BLOCK_SIZE


def _disk(path: Path, size: int, writes: dict[int, bytes], full: bytes | None = None) -> Path:
    with open(path, "wb") as f:
        if full is not None:
            f.write(full)
        f.truncate(size)
        for offset, data in writes.items():
            f.seek(offset)
            f.write(data)
    return path


def _changed(new: Path, base: Path) -> list[int]:
    fds = [os.open(p, os.O_RDONLY) for p in (new, base)]
    try:
        return delta.changed_blocks(fds[0], fds[1], new.stat().st_size)
    finally:
        for fd in fds:
            os.close(fd)


SIZE = 8 * BLOCK + 3 * 512  # 9 blocks, the last one partial


def _flipped(content: bytes, spans: dict[int, int]) -> dict[int, bytes]:
    """Edits at each offset of ``spans`` (offset: length) that differ from ``content`` in every byte.

    Fixed replacement text could equal random content by chance (1 in 256 for one byte).
    """
    return {at: bytes(b ^ 0xFF for b in content[at : at + length]) for at, length in spans.items()}


def test_scattered_first_and_last_block_changes_are_found_in_fully_allocated_disks(tmp_path: Path) -> None:
    content = os.urandom(SIZE)
    base = _disk(tmp_path / "base", SIZE, {}, full=content)
    edits = _flipped(content, {0: 5, 3 * BLOCK + 777: 9, 6 * BLOCK - 1: 2, SIZE - 1: 1})
    new = _disk(tmp_path / "new", SIZE, edits, full=content)
    assert _changed(new, base) == [0, 3, 5, 6, 8]  # 6*BLOCK-1 straddles blocks 5 and 6
    assert _changed(base, base) == []


@pytest.mark.parametrize("memcmp", ["libc", "none"])
def test_both_comparisons_find_the_same_blocks_including_the_partial_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memcmp: str
) -> None:
    if memcmp == "none":  # a Python without ctypes compares bytearrays instead
        monkeypatch.setattr(delta, "_libc_memcmp", lambda: None)
    content = os.urandom(SIZE)
    base = _disk(tmp_path / "base", SIZE, {}, full=content)
    new = _disk(tmp_path / "new", SIZE, _flipped(content, {2 * BLOCK + 9: 3, SIZE - 2: 1}), full=content)
    assert _changed(new, base) == [2, 8]
    assert _changed(_disk(tmp_path / "same", SIZE, {}, full=content), base) == []


def test_block_buffers_are_page_aligned_for_the_fast_copy() -> None:
    import ctypes
    import mmap

    pair = delta._BlockPair(BLOCK)
    try:
        for view in pair.views:
            assert ctypes.addressof(ctypes.c_char.from_buffer(view)) % mmap.PAGESIZE == 0
    finally:
        pair.close()


def test_sparse_disks_compare_only_blocks_with_data_in_either(tmp_path: Path) -> None:
    base = _disk(tmp_path / "base", SIZE, {BLOCK + 5: b"old", 4 * BLOCK: b"same"})
    new = _disk(tmp_path / "new", SIZE, {BLOCK + 5: b"new", 4 * BLOCK: b"same", 7 * BLOCK: b"added"})
    fds = [os.open(p, os.O_RDONLY) for p in (new, base)]
    try:
        candidates = delta._candidate_blocks((fds[0], fds[1]), SIZE, BLOCK)
    finally:
        for fd in fds:
            os.close(fd)
    assert candidates == [1, 4, 7], "holes in both disks are never read"
    assert _changed(new, base) == [1, 7]
    # Data written as zeros over a hole is no change.
    zeros = _disk(tmp_path / "zeros", SIZE, {2 * BLOCK: bytes(BLOCK)})
    assert _changed(zeros, _disk(tmp_path / "empty", SIZE, {})) == []


def test_a_sparse_disk_against_a_fully_allocated_one(tmp_path: Path) -> None:
    full = _disk(tmp_path / "full", SIZE, {}, full=b"\x01" * SIZE)
    sparse = _disk(tmp_path / "sparse", SIZE, {})
    assert _changed(sparse, full) == list(range(9))
    assert _changed(full, sparse) == list(range(9))


def test_change_maps_are_reused_until_a_disk_changes(tmp_path: Path) -> None:
    base = _disk(tmp_path / "base", SIZE, {0: b"a"})
    new = _disk(tmp_path / "new", SIZE, {0: b"b"})
    maps = delta.ChangeMaps(settled=0.0)
    fds = [os.open(p, os.O_RDWR) for p in (new, base)]
    try:
        assert maps.changed(fds[0], fds[1], SIZE) == ((0,), False)
        assert maps.changed(fds[0], fds[1], SIZE) == ((0,), True)
        os.pwrite(fds[0], b"c", 8 * BLOCK)
        assert maps.changed(fds[0], fds[1], SIZE) == ((0, 8), False), "a write makes the map stale"
        os.pwrite(fds[1], b"b", 0)
        assert maps.changed(fds[0], fds[1], SIZE) == ((8,), False)
    finally:
        for fd in fds:
            os.close(fd)


def test_disks_written_a_moment_ago_are_scanned_every_time(tmp_path: Path) -> None:
    # Their times could still be in the tick a further write would get (coarse on older kernels).
    base = _disk(tmp_path / "base", SIZE, {0: b"a"})
    new = _disk(tmp_path / "new", SIZE, {0: b"b"})
    maps = delta.ChangeMaps()
    fds = [os.open(p, os.O_RDONLY) for p in (new, base)]
    try:
        assert maps.changed(fds[0], fds[1], SIZE) == ((0,), False)
        assert maps.changed(fds[0], fds[1], SIZE) == ((0,), False)
    finally:
        for fd in fds:
            os.close(fd)


def test_a_raw_delta_is_the_whole_disk_with_zeros_between_the_changed_blocks() -> None:
    raw = delta.RawDelta(SIZE, (1, 8))
    pieces = list(raw.pieces())
    assert pieces == [BLOCK, vhd.BlockRef(1, BLOCK, BLOCK, 0), 6 * BLOCK, vhd.BlockRef(8, 8 * BLOCK, 1536, 0)]
    assert raw.length == SIZE
    assert list(delta.RawDelta(SIZE, ()).pieces()) == [SIZE]


def test_a_delta_names_its_parent_as_the_parents_own_export_does(tmp_path: Path) -> None:
    disk = _disk(tmp_path / "base", SIZE, {})
    info = disk.stat()
    parent = delta.parent_of("base", SIZE, info)
    assert (parent.unique_id, parent.timestamp) == delta.vhd_identity("base", SIZE, info)
    assert parent.name == "base.vhd"
    assert parent.timestamp == int(info.st_mtime) - vhd.VHD_EPOCH
    assert delta.vhd_identity("other", SIZE, info)[0] != parent.unique_id


@pytest.mark.parametrize("size", [512, BLOCK, BLOCK + 512])
def test_tiny_and_exact_sizes(tmp_path: Path, size: int) -> None:
    a = _disk(tmp_path / "a", size, {size - 1: b"a"})
    b = _disk(tmp_path / "b", size, {size - 1: b"b"})
    assert _changed(a, b) == [(size - 1) // BLOCK]
