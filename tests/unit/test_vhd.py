"""The VHD codec, byte for byte: structures at their offsets, checksums, geometry, layout, decoding."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xcpbuild import vhd

MiB = 1024 * 1024


def _sum_checksum(raw: bytes, at: int) -> int:
    zeroed = raw[:at] + bytes(4) + raw[at + 4 :]
    return (~sum(zeroed)) & 0xFFFFFFFF


@pytest.mark.parametrize(
    ("size", "chs"),
    [
        (10 * MiB, (301, 4, 17)),  # 20480 sectors: 17 sectors/track, heads raised to 4
        (128 * MiB, (963, 16, 17)),
        # sizes `qemu-img create -f vpc` picks, with the geometry it wrote for them
        (10514432, (302, 4, 17)),
        (134250496, (964, 16, 17)),
        (2147991552, (4162, 16, 63)),
        (2 * 1024 * MiB, (4161, 16, 63)),  # needs 63 sectors/track
        (200 * 1024 * MiB, (65535, 16, 255)),  # past 127 GiB the geometry saturates
        (2040 * 1024 * MiB, (65535, 16, 255)),
    ],
)
def test_chs_geometry_follows_the_specification(size: int, chs: tuple[int, int, int]) -> None:
    assert vhd.chs_geometry(size) == chs


def test_footer_fields_sit_at_their_offsets() -> None:
    uid = bytes(range(16))
    raw = vhd.Footer(10 * MiB, vhd.DISK_DYNAMIC, timestamp=12345, unique_id=uid).encode()
    assert len(raw) == 512
    assert raw[0:8] == b"conectix"
    assert struct.unpack(">I", raw[8:12])[0] == 2  # features
    assert struct.unpack(">I", raw[12:16])[0] == 0x00010000
    assert struct.unpack(">Q", raw[16:24])[0] == 512  # data offset -> dynamic header
    assert struct.unpack(">I", raw[24:28])[0] == 12345
    assert raw[28:32] == b"tap\0"  # creator app qemu trusts for the current size
    assert struct.unpack(">QQ", raw[40:56]) == (10 * MiB, 10 * MiB)
    assert raw[56:60] == bytes([301 >> 8, 301 & 0xFF, 4, 17])
    assert struct.unpack(">I", raw[60:64])[0] == 3
    assert struct.unpack(">I", raw[64:68])[0] == _sum_checksum(raw, 64)
    assert raw[68:84] == uid
    assert raw[84:] == bytes(428)
    assert vhd.Footer.decode(raw) == vhd.Footer(10 * MiB, 3, 12345, uid, 512, 10 * MiB, b"tap\0", (301, 4, 17))


def test_header_fields_sit_at_their_offsets() -> None:
    raw = vhd.Header(5).encode()
    assert len(raw) == 1024
    assert raw[0:8] == b"cxsparse"
    assert raw[8:16] == b"\xff" * 8
    assert struct.unpack(">Q", raw[16:24])[0] == 2048
    assert struct.unpack(">IIII", raw[24:40])[1:3] == (5, 2 * MiB)
    assert struct.unpack(">I", raw[36:40])[0] == _sum_checksum(raw, 36)
    assert raw[40:] == bytes(984)  # parent fields and locators empty for a dynamic disk
    assert vhd.Header.decode(raw) == vhd.Header(5)


def test_checksum_is_ones_complement_of_the_byte_sum() -> None:
    data = bytes([1, 2, 3, 4, 0xAA, 0xBB, 0xCC, 0xDD, 5])
    assert vhd.checksum(data, 4) == (~(1 + 2 + 3 + 4 + 5)) & 0xFFFFFFFF


def test_a_corrupt_footer_or_header_is_refused() -> None:
    footer = bytearray(vhd.Footer(MiB).encode())
    footer[100] ^= 1
    with pytest.raises(vhd.VhdFormatError, match="checksum"):
        vhd.Footer.decode(bytes(footer))
    with pytest.raises(vhd.VhdFormatError, match="cookie"):
        vhd.Header.decode(b"x" * 1024)


def test_layout_places_blocks_after_the_bat_in_ascending_order() -> None:
    size = 5 * MiB + 3 * 512  # three blocks, the last one partial
    lay = vhd.layout(size, [2, 0])
    assert lay.blocks == (0, 2)
    assert lay.prefix[:512] == lay.footer
    assert lay.prefix[512:1536] == vhd.Header(3).encode()
    assert lay.prefix[1536:2048] == bytes(512)
    bat = lay.prefix[2048:]
    assert len(bat) == 512
    first = (2048 + 512) // 512
    assert struct.unpack(">3I", bat[:12]) == (first, 0xFFFFFFFF, first + 4097)
    assert bat[12:] == b"\xff" * 500
    pieces = list(lay.pieces())
    assert pieces[1] == b"\xff" * 512
    assert pieces[2] == vhd.BlockRef(0, 0, 2 * MiB, 0)
    assert pieces[4] == vhd.BlockRef(2, 4 * MiB, MiB + 1536, MiB - 1536)  # padded to a whole block
    assert pieces[-1] == lay.footer
    assert lay.length == 512 + 1024 + 512 + 512 + 2 * (512 + 2 * MiB) + 512
    assert lay.length == vhd.stream_length(size, 2)
    assert len(vhd.encode(bytes(size), [0, 2])) == lay.length


def test_sizes_a_vhd_cannot_hold_are_refused() -> None:
    for size in (0, 1000, vhd.MAX_VIRTUAL_SIZE + 512):
        with pytest.raises(vhd.VhdFormatError):
            vhd.layout(size, [])
    with pytest.raises(vhd.VhdFormatError):
        vhd.layout(4 * MiB, [2])


def test_the_bat_of_the_largest_disk_is_four_mebibytes() -> None:
    assert vhd.stream_length(vhd.MAX_VIRTUAL_SIZE, 0) == 2048 + 4 * 1044480 + 512


@st.composite
def disks(draw: st.DrawFn) -> bytes:
    sectors = draw(st.integers(min_value=1, max_value=3 * 4096 + 5))
    disk = bytearray(sectors * 512)
    for _ in range(draw(st.integers(0, 6))):
        offset = draw(st.integers(0, len(disk) - 1))
        data = draw(st.binary(min_size=1, max_size=700))
        disk[offset : offset + len(data)] = data[: len(disk) - offset]
    return bytes(disk)


@settings(max_examples=40, deadline=None)
@given(disk=disks(), chunk=st.integers(min_value=1, max_value=300_000), extra=st.sets(st.integers(0, 3)))
def test_decoding_an_encoded_disk_gives_it_back_whatever_the_chunking(disk: bytes, chunk: int, extra: set[int]) -> None:
    n = vhd.block_count(len(disk))
    allocated = {i for i in range(n) if any(disk[i * vhd.BLOCK_SIZE : (i + 1) * vhd.BLOCK_SIZE])}
    allocated |= {i for i in extra if i < n}  # allocated blocks of zeros are fine too
    stream = vhd.encode(disk, sorted(allocated))
    decoder = vhd.StreamDecoder()
    out = bytearray()
    for start in range(0, len(stream), chunk):
        for piece in decoder.feed(stream[start : start + chunk]):
            if isinstance(piece, vhd.Data):
                assert piece.offset == len(out)
                out += piece.data
            else:
                assert piece.offset == len(out)
                out += bytes(piece.length)
    decoder.finish()
    assert decoder.done and decoder.size == len(disk)
    assert bytes(out) == disk


def test_sectors_absent_from_the_bitmap_read_as_zeros() -> None:
    disk = bytes([7]) * (2 * MiB)
    stream = bytearray(vhd.encode(disk, [0]))
    bitmap_at = 2048 + 512
    stream[bitmap_at] = 0b01111111  # sector 0 absent
    stream[bitmap_at + 1] = 0b11111110  # sector 15 absent
    out = vhd.decode(bytes(stream))
    expected = bytearray(disk)
    expected[0:512] = bytes(512)
    expected[15 * 512 : 16 * 512] = bytes(512)
    assert out == bytes(expected)


def test_a_truncated_stream_is_reported() -> None:
    stream = vhd.encode(bytes(MiB) + b"x" * 512)
    decoder = vhd.StreamDecoder()
    decoder.feed(stream[:-100])
    with pytest.raises(vhd.VhdFormatError, match="ended early"):
        decoder.finish()


def test_trailing_bytes_and_a_wrong_final_footer_are_reported() -> None:
    stream = vhd.encode(b"x" * 4096)
    with pytest.raises(vhd.VhdFormatError, match="unexpected bytes"):
        vhd.decode(stream + b"!")
    other = vhd.Footer(4096, timestamp=99).encode()
    with pytest.raises(vhd.VhdFormatError, match="final footer"):
        vhd.decode(stream[:-512] + other)


def test_a_stream_with_blocks_out_of_order_is_refused() -> None:
    lay = vhd.layout(4 * MiB, [0, 1])
    bat_at = 2048
    prefix = bytearray(lay.prefix)
    a, b = struct.unpack(">2I", prefix[bat_at : bat_at + 8])
    prefix[bat_at : bat_at + 8] = struct.pack(">2I", b, a)  # block 1 stored before block 0
    with pytest.raises(vhd.VhdFormatError, match="ascending"):
        vhd.StreamDecoder().feed(bytes(prefix))
