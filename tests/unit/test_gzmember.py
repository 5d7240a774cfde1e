"""gzip members made of separately compressed segments: what zlib and Python's gzip read back."""

from __future__ import annotations

import gzip
import os
import random
import zlib

import pytest

from xcpbuild.adapters import gzmember


@pytest.mark.parametrize("seed", range(20))
def test_combined_crc_is_the_crc_of_the_concatenation(seed: int) -> None:
    rng = random.Random(seed)
    first, second = rng.randbytes(rng.randrange(0, 5000)), rng.randbytes(rng.randrange(0, 200_000))
    combined = gzmember.crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second))
    assert combined == zlib.crc32(first + second)


def test_segments_make_one_member_any_reader_inflates() -> None:
    texts = [b"<?xml header?>\n", b"<package/>\n" * 5000, b"", os.urandom(3000), b"</metadata>"]
    parts = [gzmember.segment(text) for text in texts[:-1]] + [gzmember.segment(texts[-1], last=True)]
    data = gzmember.member(parts)
    assert gzip.decompress(data) == b"".join(texts)
    inflater = zlib.decompressobj(wbits=31)  # gzip framing, one member only
    assert inflater.decompress(data) == b"".join(texts)
    assert inflater.eof
    assert inflater.unused_data == b""


def test_a_damaged_member_is_refused_by_its_crc() -> None:
    data = bytearray(gzmember.member([gzmember.segment(b"abc" * 100, last=True)]))
    data[-8] ^= 1  # the CRC in the trailer
    with pytest.raises(gzip.BadGzipFile, match="CRC"):
        gzip.decompress(bytes(data))
