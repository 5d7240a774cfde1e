"""One gzip member made of deflate segments compressed apart (in several processes).

Each segment is raw deflate ended by a sync flush (byte-aligned, not final), the
last one by a finish; laid end to end they are one valid deflate stream, so the
file is a single ordinary gzip member that any reader (zlib's gzread, Python's
gzip, yum, dnf) inflates in one go. The member's CRC-32 is combined from the
segments' own, which needs only their lengths, not their bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

LEVEL = 6  # zlib's default

_POLY = 0xEDB88320  # CRC-32, bit-reflected


@dataclass(frozen=True)
class Segment:
    data: bytes  # raw deflate, sync-flushed (or finished, for the last)
    crc: int  # CRC-32 of the uncompressed bytes
    size: int  # uncompressed length


def segment(text: bytes, *, last: bool = False) -> Segment:
    packer = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = packer.compress(text) + packer.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return Segment(data, zlib.crc32(text), len(text))


def _multiply(a: int, b: int) -> int:
    """a * b modulo the CRC polynomial (both reflected)."""
    product = 0
    bit = 1 << 31
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _powers() -> list[int]:
    """x^(2^k) modulo the polynomial, k = 0..63."""
    powers = [1 << 30]  # x^1
    for _ in range(63):
        powers.append(_multiply(powers[-1], powers[-1]))
    return powers


_X2N = _powers()


def crc32_combine(crc1: int, crc2: int, size2: int) -> int:
    """The CRC-32 of A+B from A's CRC, B's CRC and B's length."""
    shift = 1 << 31  # x^0
    k = 3  # size2 bytes are 8 * size2 bits: start at x^(2^3)
    n = size2
    while n:
        if n & 1:
            shift = _multiply(_X2N[k % 64], shift)
        n >>= 1
        k += 1
    return _multiply(shift, crc1) ^ crc2


def member(segments: Iterable[Segment]) -> bytes:
    """The gzip member: header, the segments in order (the last one finished), trailer."""
    crc, size, parts = 0, 0, [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"]  # deflate, no name, no mtime, Unix
    for part in segments:
        crc = crc32_combine(crc, part.crc, part.size)
        size += part.size
        parts.append(part.data)
    parts.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(parts)
