"""The VHD decoder under hostile input: any bytes either decode or raise VhdFormatError, quickly, in little memory.

Random bytes rarely get past the footer's checksum, so most examples are built
from structures with valid checksums and hostile field values (sizes, offsets,
block sizes, disk types, BAT entries), then cut and mutated.
"""

from __future__ import annotations

import os
import struct
import time
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcpbuild import vhd

MiB = 1024 * 1024
# Seconds one example may take: generous for a loaded 2-core machine, far below a hang.
TIME_LIMIT = 5.0


def _footer(draw: st.DrawFn) -> bytes:
    size = draw(st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([512, 4 * MiB, vhd.MAX_VIRTUAL_SIZE])))
    disk_type = draw(st.sampled_from([vhd.DISK_DYNAMIC] * 4 + [0, vhd.DISK_FIXED, vhd.DISK_DIFFERENCING, 2**32 - 1]))
    data_offset = draw(st.one_of(st.just(vhd.HEADER_OFFSET), st.integers(0, 2**64 - 1), st.integers(0, 4096)))
    return vhd.Footer(size % 2**64, disk_type, data_offset=data_offset, geometry=(0, 0, 0)).encode()


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=4096))
    footer = _footer(draw)
    entries = draw(st.one_of(st.integers(0, 8), st.integers(0, 2**32 - 1)))
    block_size = draw(st.sampled_from([vhd.BLOCK_SIZE, vhd.MIN_BLOCK_SIZE, vhd.MAX_BLOCK_SIZE, 4096, 3 * MiB]))
    table_offset = draw(st.one_of(st.just(vhd.TABLE_OFFSET), st.integers(0, 2**64 - 1), st.integers(0, 8192)))
    header = vhd.Header(entries, table_offset, block_size).encode()
    bat_entries = draw(
        st.lists(st.one_of(st.just(vhd.UNALLOCATED), st.integers(0, 64), st.integers(0, 2**32 - 1)), max_size=8)
    )
    bat = vhd.encode_bat(bat_entries)
    bitmap = draw(st.one_of(st.just(vhd.FULL_BITMAP), st.binary(min_size=512, max_size=512)))
    body = draw(st.binary(max_size=2048))
    stream = bytearray(footer + header + bytes(512) + bat + bitmap + body + footer)
    if draw(st.booleans()):
        stream = stream[: draw(st.integers(0, len(stream)))]
    for _ in range(draw(st.integers(0, 3))):
        if stream:
            stream[draw(st.integers(0, len(stream) - 1))] = draw(st.integers(0, 255))
    return bytes(stream)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), chunk=st.integers(1, 5000))
def test_any_bytes_decode_or_raise_a_format_error_in_bounded_time_and_memory(stream: bytes, chunk: int) -> None:
    decoder = vhd.StreamDecoder()
    start = time.monotonic()
    tracemalloc.start()
    try:
        for at in range(0, len(stream), chunk):
            pieces = decoder.feed(stream[at : at + chunk])
            # Zeros are counted, never materialised: what comes out is at most what went in.
            assert sum(len(p.data) for p in pieces if isinstance(p, vhd.Data)) <= chunk
        decoder.finish()
    except vhd.VhdFormatError as exc:
        assert str(exc)  # says what was wrong
        assert decoder.reading  # and where
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= 8 * len(stream) + 2 * MiB
    assert time.monotonic() - start < TIME_LIMIT


def test_a_full_size_bat_allocating_every_block_is_held_as_four_bytes_an_entry() -> None:
    """4 Mi entries of 512 KiB blocks (2040 GiB), all allocated: 16 MiB of BAT, not 400 MiB of Python tuples."""
    blocks = vhd.MAX_VIRTUAL_SIZE // vhd.MIN_BLOCK_SIZE
    footer = vhd.Footer(vhd.MAX_VIRTUAL_SIZE).encode()
    header = vhd.Header(blocks, block_size=vhd.MIN_BLOCK_SIZE).encode()
    first = (vhd.TABLE_OFFSET + 4 * blocks) // 512
    bat = struct.pack(f">{blocks}I", *range(first, first + blocks * 1025, 1025))
    stream = footer + header + bytes(512) + bat
    decoder = vhd.StreamDecoder()
    _rss_peak()
    resident = _current_rss()
    decoder.feed(stream)
    assert decoder.reading == "bitmap"
    assert _rss_peak() - resident < 4 * len(bat)  # the buffered BAT, its copy and the array


def _current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss_peak() -> int:
    """This process's peak resident size since the call before (Linux resets it on "5" to clear_refs)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
                with open("/proc/self/clear_refs", "w") as clear:
                    clear.write("5")
                return peak
    raise AssertionError("no VmHWM in /proc/self/status")


def test_a_bitmap_of_alternating_sectors_is_decoded_in_linear_time() -> None:
    """A 16 MiB block whose sectors alternate present/absent (32 Ki runs) fed 4 KiB at a time."""
    size = 16 * MiB
    footer = vhd.Footer(size).encode()
    header = vhd.Header(1, block_size=size).encode()
    bitmap = b"\xaa" * (size // 512 // 8)
    first = (vhd.TABLE_OFFSET + 512) // 512
    stream = footer + header + bytes(512) + vhd.encode_bat([first]) + bitmap + bytes(size) + footer
    decoder = vhd.StreamDecoder()
    start = time.monotonic()
    total = 0
    view = memoryview(stream)
    for at in range(0, len(stream), 4096):
        for piece in decoder.feed(view[at : at + 4096]):
            total += len(piece.data) if isinstance(piece, vhd.Data) else piece.length
    decoder.finish()
    assert total == size
    assert time.monotonic() - start < 10  # scanning every run for every chunk took minutes
