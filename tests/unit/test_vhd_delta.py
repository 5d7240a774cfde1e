"""Differencing VHDs in the codec: parent fields and locator at their offsets, gaps read the parent."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xcpbuild import vhd

MiB = 1024 * 1024
PARENT = vhd.ParentDisk(bytes(range(100, 116)), 0x12345678, "base.vhd")


def _sum_checksum(raw: bytes, at: int) -> int:
    return (~sum(raw[:at] + bytes(4) + raw[at + 4 :])) & 0xFFFFFFFF


def test_the_differencing_header_names_the_parent_where_the_specification_puts_it() -> None:
    raw = vhd.encode_differencing_header(3, PARENT)
    assert len(raw) == 1024 and raw[0:8] == b"cxsparse"
    assert struct.unpack(">I", raw[36:40])[0] == _sum_checksum(raw, 36)
    assert raw[40:56] == PARENT.unique_id
    assert struct.unpack(">I", raw[56:60])[0] == 0x12345678
    assert raw[60:64] == bytes(4)
    assert raw[64:80] == "base.vhd".encode("utf-16-be") and raw[80:576] == bytes(496)
    # locator 0 as ocaml-vhd's from_filename writes it: MacX, 1 sector, len("file://base.vhd"), at 1536
    assert raw[576:600] == b"MacX" + struct.pack(">IIIQ", 1, 15, 0, 1536)
    assert raw[600:1024] == bytes(424)
    assert vhd.parent_locators(raw) == [(b"MacX", 1, 15, 1536)]
    assert vhd.decode_parent(raw) == PARENT
    vhd.Header.decode(raw)  # a valid dynamic header otherwise


def test_a_delta_stream_has_type_4_the_locator_data_and_the_same_layout_as_a_full_stream() -> None:
    size = 5 * MiB
    full = vhd.layout(size, [0, 2], timestamp=7, unique_id=bytes(16))
    delta = vhd.delta_layout(size, [0, 2], PARENT, timestamp=7)
    assert delta.length == full.length == len(delta.prefix) + 2 * (512 + 2 * MiB) + 512
    footer = vhd.Footer.decode(delta.footer)
    assert footer.disk_type == vhd.DISK_DIFFERENCING and footer.current_size == size
    assert delta.prefix[:512] == delta.footer
    assert delta.prefix[1536:2048] == b"file://base.vhd" + bytes(512 - 15)
    assert delta.prefix[2048:] == full.prefix[2048:]  # same BAT
    assert delta.blocks == (0, 2)


def test_an_unchanged_disk_gives_a_delta_with_an_empty_bat() -> None:
    disk = b"\x01" * (3 * MiB)
    stream = vhd.encode_delta(disk, disk, PARENT)
    assert len(stream) == vhd.stream_length(len(disk), 0)
    assert struct.unpack(">2I", stream[2048:2056]) == (vhd.UNALLOCATED, vhd.UNALLOCATED)
    assert vhd.decode(stream, parent=disk) == disk


def test_a_delta_cannot_be_read_without_its_parent_and_parents_must_fit() -> None:
    disk = bytes(MiB)
    stream = vhd.encode_delta(disk, disk, PARENT)
    with pytest.raises(vhd.VhdFormatError, match="without its parent"):
        vhd.decode(stream)
    with pytest.raises(vhd.VhdFormatError, match="its parent's size"):
        vhd.encode_delta(disk, bytes(2 * MiB), PARENT)
    with pytest.raises(vhd.VhdFormatError, match="UTF-16"):
        vhd.delta_layout(MiB, [], PARENT._replace(name="x" * 300))
    with pytest.raises(vhd.VhdFormatError, match="16 bytes"):
        vhd.delta_layout(MiB, [], PARENT._replace(unique_id=b"short"))


@st.composite
def disk_pairs(draw: st.DrawFn) -> tuple[bytes, bytes]:
    sectors = draw(st.integers(min_value=1, max_value=3 * 4096 + 5))
    base = bytearray(draw(st.binary(min_size=1, max_size=64)) * (sectors * 512))[: sectors * 512]
    new = bytearray(base)
    for _ in range(draw(st.integers(0, 5))):
        offset = draw(st.integers(0, len(new) - 1))
        data = draw(st.binary(min_size=1, max_size=700))
        new[offset : offset + len(data)] = data[: len(new) - offset]
    return bytes(base), bytes(new)


@settings(max_examples=40, deadline=None)
@given(pair=disk_pairs(), chunk=st.integers(min_value=1, max_value=300_000))
def test_applying_a_decoded_delta_to_its_parent_gives_the_new_disk(pair: tuple[bytes, bytes], chunk: int) -> None:
    base, new = pair
    stream = vhd.encode_delta(new, base, PARENT)
    decoder = vhd.StreamDecoder()
    out = bytearray()
    for start in range(0, len(stream), chunk):
        for piece in decoder.feed(stream[start : start + chunk]):
            assert piece.offset == len(out)
            assert not isinstance(piece, vhd.Zeros), "nothing in a differencing disk reads as plain zeros"
            if isinstance(piece, vhd.Data):
                out += piece.data
            else:
                out += base[piece.offset : piece.offset + piece.length]
    decoder.finish()
    assert decoder.parent == PARENT
    assert bytes(out) == new


def test_sectors_absent_from_a_differencing_bitmap_read_the_parent() -> None:
    base = b"\x02" * (2 * MiB)
    new = b"\x07" * (2 * MiB)
    stream = bytearray(vhd.encode_delta(new, base, PARENT))
    stream[2048 + 512] = 0b01111111  # sector 0 absent: the parent's
    expected = bytearray(new)
    expected[0:512] = base[0:512]
    assert vhd.decode(bytes(stream), parent=base) == bytes(expected)


def test_a_dynamic_disk_still_reads_gaps_as_zeros() -> None:
    pieces = vhd.StreamDecoder().feed(vhd.encode(bytes(3 * MiB), [1]))
    assert {type(p) for p in pieces} <= {vhd.Data, vhd.Zeros}
