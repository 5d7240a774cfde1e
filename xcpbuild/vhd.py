"""VHD stream encoding and decoding: pure functions, no I/O.

The encoder lays out a dynamic VHD exactly as vhd-tool streams an export: footer
copy, dynamic header at 512, an empty sector, the BAT at 2048, then only the
allocated blocks in ascending order (each a 512-byte all-ones bitmap followed by
the 2 MiB of data), then the footer. The whole length is known before the first
byte, so an HTTP response can carry an exact Content-Length.

The decoder turns such a stream back into raw disk content while reading it
strictly forwards (as XAPI's importer does), so a verifier can check an export
without storing it.

Creator app: ``tap\\0`` (XenServer's blktap). qemu's vpc driver trusts the
footer's current size for that creator instead of the CHS geometry, so
``qemu-img convert -f vpc`` reads the exact size even when CHS cannot express
it (vhd-tool's own ``caml`` would make qemu size the disk from CHS and read it
short).

Python 3.6 compatible: the export server ships this module to XCP-ng dom0, so
records are NamedTuples and annotations use ``typing``'s names.
"""

import enum
import struct
import sys
from array import array
from bisect import bisect_right
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

SECTOR = 512
BLOCK_SIZE = 2 * 1024 * 1024
BITMAP_SIZE = SECTOR  # 4096 sectors per block -> 512 bytes of bitmap, already sector-aligned
FULL_BITMAP = b"\xff" * BITMAP_SIZE  # every sector of the block present
FOOTER_SIZE = 512
HEADER_SIZE = 1024
HEADER_OFFSET = 512
TABLE_OFFSET = 2048
MAX_VIRTUAL_SIZE = 2040 * 1024**3
UNALLOCATED = 0xFFFFFFFF
# Block sizes the decoder accepts, which bounds the BAT it must hold (16 MiB at most).
MIN_BLOCK_SIZE = 512 * 1024
MAX_BLOCK_SIZE = 256 * 1024 * 1024
MAX_BAT_ENTRIES = MAX_VIRTUAL_SIZE // MIN_BLOCK_SIZE

DISK_FIXED = 2
DISK_DYNAMIC = 3
DISK_DIFFERENCING = 4

FOOTER_COOKIE = b"conectix"
HEADER_COOKIE = b"cxsparse"
CREATOR_APP = b"tap\0"
CREATOR_VERSION = 0x00010003
CREATOR_OS = b"Wi2k"
# Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC).
VHD_EPOCH = 946684800

_FOOTER = struct.Struct(">8sIIQI4sI4sQQIII16sB427x")
_HEADER = struct.Struct(">8sQQIIII16sII512s192s256x")


class VhdFormatError(ValueError):
    """A VHD stream or structure is malformed, or cannot be decoded forwards."""


def roundup(value: int, unit: int = SECTOR) -> int:
    return -(-value // unit) * unit


def checksum(structure: bytes, field_offset: int) -> int:
    """Ones' complement of the byte sum, with the 4-byte checksum field counted as zeros."""
    total = sum(structure) - sum(structure[field_offset : field_offset + 4])
    return ~total & 0xFFFFFFFF


def chs_geometry(size: int) -> Tuple[int, int, int]:
    """(cylinders, heads, sectors per track) for ``size`` bytes, by the VHD specification's algorithm."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


def block_count(size: int) -> int:
    return -(-size // BLOCK_SIZE)


def check_size(size: int) -> None:
    """Raise VhdFormatError when ``size`` cannot be exported as a VHD."""
    if size <= 0 or size % SECTOR:
        raise VhdFormatError(f"a VHD disk size must be a positive multiple of {SECTOR} bytes, not {size}")
    if size > MAX_VIRTUAL_SIZE:
        raise VhdFormatError(f"{size} bytes exceeds the VHD export maximum of 2040 GiB")


class Footer(NamedTuple):
    current_size: int
    disk_type: int = DISK_DYNAMIC
    timestamp: int = 0
    unique_id: bytes = bytes(16)
    data_offset: int = HEADER_OFFSET
    original_size: Optional[int] = None
    creator_app: bytes = CREATOR_APP
    geometry: Optional[Tuple[int, int, int]] = None

    def encode(self) -> bytes:
        cyl, heads, spt = self.geometry or chs_geometry(self.current_size)
        fields = [
            FOOTER_COOKIE,
            0x00000002,
            0x00010000,
            self.data_offset,
            self.timestamp & 0xFFFFFFFF,
            self.creator_app,
            CREATOR_VERSION,
            CREATOR_OS,
            self.current_size if self.original_size is None else self.original_size,
            self.current_size,
            (cyl << 16) | (heads << 8) | spt,
            self.disk_type,
            0,
            self.unique_id,
            0,
        ]
        raw = _FOOTER.pack(*fields)
        fields[12] = checksum(raw, 64)
        return _FOOTER.pack(*fields)

    @classmethod
    def decode(cls, raw: bytes) -> "Footer":
        if len(raw) != FOOTER_SIZE:
            raise VhdFormatError(f"a footer is {FOOTER_SIZE} bytes, got {len(raw)}")
        f = _FOOTER.unpack(raw)
        if f[0] != FOOTER_COOKIE:
            raise VhdFormatError(f"footer cookie is {f[0]!r}, expected {FOOTER_COOKIE!r}")
        if f[12] != checksum(raw, 64):
            raise VhdFormatError(f"footer checksum {f[12]:#010x} does not match {checksum(raw, 64):#010x}")
        geometry = (f[10] >> 16, (f[10] >> 8) & 0xFF, f[10] & 0xFF)
        return cls(f[9], f[11], f[4], f[13], f[3], f[8], f[5], geometry)


class Header(NamedTuple):
    max_table_entries: int
    table_offset: int = TABLE_OFFSET
    block_size: int = BLOCK_SIZE

    def encode(self) -> bytes:
        fields: List[object] = [
            HEADER_COOKIE,
            0xFFFFFFFFFFFFFFFF,
            self.table_offset,
            0x00010000,
            self.max_table_entries,
            self.block_size,
            0,
            bytes(16),
            0,
            0,
            bytes(512),
            bytes(192),
        ]
        raw = _HEADER.pack(*fields)
        fields[6] = checksum(raw, 36)
        return _HEADER.pack(*fields)

    @classmethod
    def decode(cls, raw: bytes) -> "Header":
        if len(raw) != HEADER_SIZE:
            raise VhdFormatError(f"a dynamic header is {HEADER_SIZE} bytes, got {len(raw)}")
        h = _HEADER.unpack(raw)
        if h[0] != HEADER_COOKIE:
            raise VhdFormatError(f"header cookie is {h[0]!r}, expected {HEADER_COOKIE!r}")
        if h[6] != checksum(raw, 36):
            raise VhdFormatError(f"header checksum {h[6]:#010x} does not match {checksum(raw, 36):#010x}")
        if not MIN_BLOCK_SIZE <= h[5] <= MAX_BLOCK_SIZE or h[5] & (h[5] - 1):
            raise VhdFormatError(f"unsupported block size {h[5]} (a power of two from 512 KiB to 256 MiB)")
        return cls(h[4], h[2], h[5])


def encode_bat(entries: Sequence[int]) -> bytes:
    """The BAT: one big-endian sector offset per block, padded with 0xFF to a whole sector."""
    raw = struct.pack(f">{len(entries)}I", *entries)
    return raw + b"\xff" * (roundup(len(raw)) - len(raw))


class BlockRef(NamedTuple):
    """One block's data in the stream: ``length`` disk bytes at ``disk_offset``, then ``padding`` zeros."""

    block: int  # the block's index (``index`` would shadow tuple.index)
    disk_offset: int
    length: int
    padding: int


class StreamLayout(NamedTuple):
    """Everything about a dynamic VHD export of one disk, computed before any byte is sent."""

    size: int
    blocks: Tuple[int, ...]
    footer: bytes
    prefix: bytes  # footer copy + header + empty sector + BAT

    @property
    def length(self) -> int:
        return stream_length(self.size, len(self.blocks))

    def pieces(self) -> Iterator[Union[bytes, BlockRef]]:
        """The stream in order: metadata as bytes, block data as BlockRef for the caller to copy."""
        yield self.prefix
        for index in self.blocks:
            yield FULL_BITMAP
            start = index * BLOCK_SIZE
            length = min(BLOCK_SIZE, self.size - start)
            yield BlockRef(index, start, length, BLOCK_SIZE - length)
        yield self.footer


def stream_length(size: int, allocated: int) -> int:
    """Bytes in the stream of a ``size``-byte disk with ``allocated`` blocks holding data."""
    bat = roundup(4 * block_count(size))
    return FOOTER_SIZE + HEADER_SIZE + SECTOR + bat + allocated * (BITMAP_SIZE + BLOCK_SIZE) + FOOTER_SIZE


def layout(size: int, allocated: Sequence[int], timestamp: int = 0, unique_id: bytes = bytes(16)) -> StreamLayout:
    """Lay out the export of a ``size``-byte disk whose blocks ``allocated`` hold data."""
    check_size(size)
    n = block_count(size)
    blocks = tuple(sorted(set(allocated)))
    if blocks and (blocks[0] < 0 or blocks[-1] >= n):
        raise VhdFormatError(f"block indices must be in 0..{n - 1}")
    if len(unique_id) != 16:
        raise VhdFormatError("a unique id is 16 bytes")
    bat_bytes = roundup(4 * n)
    first_sector = (TABLE_OFFSET + bat_bytes) // SECTOR
    per_block = (BITMAP_SIZE + BLOCK_SIZE) // SECTOR
    entries = [UNALLOCATED] * n
    for k, index in enumerate(blocks):
        entries[index] = first_sector + k * per_block
    footer = Footer(size, DISK_DYNAMIC, timestamp, unique_id).encode()
    header = Header(n).encode()
    prefix = footer + header + bytes(SECTOR) + encode_bat(entries)
    return StreamLayout(size, blocks, footer, prefix)


def encode(disk: bytes, allocated: Optional[Sequence[int]] = None, timestamp: int = 0) -> bytes:
    """The whole stream for an in-memory disk (tests and small tools; servers use ``layout``)."""
    if allocated is None:
        allocated = [i for i in range(block_count(len(disk))) if any(disk[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE])]
    out = bytearray()
    for piece in layout(len(disk), allocated, timestamp).pieces():
        if isinstance(piece, BlockRef):
            out += disk[piece.disk_offset : piece.disk_offset + piece.length]
            out += bytes(piece.padding)
        else:
            out += piece
    return bytes(out)


class Data(NamedTuple):
    """Decoded disk content: ``data`` at disk ``offset``."""

    offset: int
    data: bytes


class Zeros(NamedTuple):
    """``length`` bytes of zeros at disk ``offset`` (unallocated blocks or absent sectors)."""

    offset: int
    length: int


class FromParent(NamedTuple):
    """``length`` bytes at disk ``offset`` that a differencing disk leaves to its parent."""

    offset: int
    length: int


class ParentDisk(NamedTuple):
    """The disk a differencing VHD is relative to, as its header names it."""

    unique_id: bytes  # the parent's footer unique id
    timestamp: int  # the parent's modification time, seconds since 2000-01-01 UTC
    name: str  # parent unicode name; locator 0 is file://NAME

    @property
    def locator_data(self) -> bytes:
        return ("file://" + self.name).encode("utf-8")


Piece = Union[Data, Zeros, FromParent]


def _runs(bitmap: bytes, block_size: int) -> List[Tuple[int, int, bool]]:
    """(start, end, present) byte ranges of a block from its sector bitmap, MSB first."""
    if bitmap.count(0xFF) == len(bitmap):
        return [(0, block_size, True)]
    runs: List[Tuple[int, int, bool]] = []
    for sector in range(block_size // SECTOR):
        present = bool(bitmap[sector // 8] & (0x80 >> (sector % 8)))
        start = sector * SECTOR
        if runs and runs[-1][2] == present:
            runs[-1] = (runs[-1][0], start + SECTOR, present)
        else:
            runs.append((start, start + SECTOR, present))
    return runs


class _Part(enum.Enum):
    """What the decoder reads next; the value is how error messages name it."""

    FOOTER_COPY = "footer-copy"
    HEADER = "header"
    BAT = "bat"
    BITMAP = "bitmap"
    FOOTER = "footer"
    SKIP = "skip"  # bytes between structures, read over


class StreamDecoder:
    """Decode a dynamic VHD stream, read strictly forwards, into raw disk pieces.

    ``feed`` takes bytes as they arrive and returns the disk pieces they complete,
    in ascending disk order (the zeros up to the end of the disk come with the final
    footer); ``finish`` checks that the stream did end with its footer. Memory use is
    bounded by one structure (the BAT: 4 MiB for 2040 GiB in 2 MiB blocks) whatever the disk size.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # stream bytes consumed
        self._disk_pos = 0  # disk bytes emitted
        self._need: Tuple[_Part, int] = (_Part.FOOTER_COPY, FOOTER_SIZE)
        self._footer: Optional[Footer] = None
        self._footer_raw = b""
        self._header: Optional[Header] = None
        # The BAT as 4 bytes an entry (not a list of tuples: 4 Mi entries stay 16 MiB), and the
        # index of the next entry to look at for an allocated block.
        self._bat = array("I")
        self._next_index = 0
        self._index = 0  # the block being read
        self._then: Tuple[_Part, int] = (_Part.HEADER, HEADER_SIZE)  # what to read once a skip ends
        self._block: Optional[Tuple[int, List[Tuple[int, int, bool]], int]] = None  # index, runs, bytes consumed
        self._run_ends: List[int] = []  # end of each run of the current block, to find a chunk's first run
        self._done = False
        self.parent: Optional[ParentDisk] = None  # set once the header of a differencing disk is read

    @property
    def size(self) -> Optional[int]:
        return self._footer.current_size if self._footer else None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def position(self) -> int:
        """Stream bytes consumed so far."""
        return self._pos

    @property
    def reading(self) -> str:
        """What the decoder is reading now, for error messages: ``footer-copy``, ``bat``, ``block 7``..."""
        if self._block is not None:
            return f"block {self._block[0]}"
        what = self._need[0]
        return f"gap before the {self._then[0].value}" if what is _Part.SKIP else what.value

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> List[Piece]:
        out: List[Piece] = []
        view = memoryview(data)
        while view:
            if self._done:
                raise VhdFormatError(f"{len(view)} unexpected bytes after the final footer")
            if self._block is not None:
                view = self._feed_block(view, out)
                continue
            what, target = self._need
            if what is _Part.SKIP:
                take = min(len(view), target - self._pos)
                self._pos += take
                view = view[take:]
                if self._pos == target:
                    self._need = self._then
                continue
            take = min(len(view), target - len(self._buf))
            self._buf += view[:take]
            self._pos += take
            view = view[take:]
            if len(self._buf) == target:
                raw = bytes(self._buf)
                self._buf.clear()
                self._structure(what, raw, out)
        return out

    def finish(self) -> List[Piece]:
        if not self._done:
            reading = self._need[0].value
            raise VhdFormatError(f"the stream ended early, after {self._pos} bytes (while reading the {reading})")
        return []

    def _skip_to(self, offset: int, then: _Part, length: int) -> None:
        if offset < self._pos:
            raise VhdFormatError(f"the {then} at stream offset {offset} lies behind the read position {self._pos}")
        self._then = (then, length)
        self._need = (_Part.SKIP, offset) if offset > self._pos else (then, length)

    def _structure(self, what: _Part, raw: bytes, out: List[Piece]) -> None:
        if what is _Part.FOOTER_COPY:
            self._footer = Footer.decode(raw)
            self._footer_raw = raw
            if self._footer.disk_type not in (DISK_DYNAMIC, DISK_DIFFERENCING):
                raise VhdFormatError(f"disk type {self._footer.disk_type} is not dynamic (3) or differencing (4)")
            self._skip_to(self._footer.data_offset, _Part.HEADER, HEADER_SIZE)
        elif what is _Part.HEADER:
            self._header = Header.decode(raw)
            assert self._footer is not None
            if self._footer.disk_type == DISK_DIFFERENCING:
                self.parent = decode_parent(raw)
            expected = -(-self._footer.current_size // self._header.block_size)
            if self._header.max_table_entries < expected:
                raise VhdFormatError(f"the BAT has {self._header.max_table_entries} entries, the size needs {expected}")
            if self._footer.current_size > MAX_VIRTUAL_SIZE or self._header.max_table_entries > MAX_BAT_ENTRIES:
                raise VhdFormatError("the disk is larger than a VHD export may be (2040 GiB)")
            self._skip_to(self._header.table_offset, _Part.BAT, roundup(4 * self._header.max_table_entries))
        elif what is _Part.BAT:
            assert self._header is not None
            assert self._footer is not None
            bat = array("I", raw[: 4 * self._header.max_table_entries])  # "I" is 4 bytes wherever Linux runs
            if sys.byteorder == "little":
                bat.byteswap()
            blocks = -(-self._footer.current_size // self._header.block_size)
            beyond = len(bat) - blocks
            if beyond > 0 and bat[blocks:].count(UNALLOCATED) != beyond:
                raise VhdFormatError(f"the BAT allocates blocks beyond the {blocks} blocks of the disk")
            previous = -1
            for entry in bat:
                if entry != UNALLOCATED:
                    if entry <= previous:
                        raise VhdFormatError(
                            "blocks are not stored in ascending order; this stream cannot be read forwards"
                        )
                    previous = entry
            self._bat = bat
            self._next_block()
        elif what is _Part.BITMAP:
            assert self._header is not None
            runs = _runs(raw, self._header.block_size)
            self._run_ends = [end for _, end, _ in runs]
            self._block = (self._index, runs, 0)
        elif what is _Part.FOOTER:
            if raw != self._footer_raw:
                raise VhdFormatError("the final footer differs from the footer copy at the start")
            assert self._footer is not None
            self._zeros_to(self._footer.current_size, out)
            self._done = True

    def _next_block(self) -> None:
        while self._next_index < len(self._bat) and self._bat[self._next_index] == UNALLOCATED:
            self._next_index += 1
        if self._next_index < len(self._bat):
            self._index = self._next_index
            self._next_index += 1
            self._skip_to(self._bat[self._index] * SECTOR, _Part.BITMAP, self._bitmap_size())
        else:
            self._need = (_Part.FOOTER, FOOTER_SIZE)

    def _bitmap_size(self) -> int:
        assert self._header is not None
        return roundup(self._header.block_size // SECTOR // 8)

    def _gap(self, offset: int, length: int) -> Piece:
        """What a sector without data reads as: zeros, or the parent's for a differencing disk."""
        return FromParent(offset, length) if self.parent is not None else Zeros(offset, length)

    def _zeros_to(self, offset: int, out: List[Piece]) -> None:
        if offset > self._disk_pos:
            out.append(self._gap(self._disk_pos, offset - self._disk_pos))
            self._disk_pos = offset

    def _feed_block(self, view: memoryview, out: List[Piece]) -> memoryview:
        assert self._block is not None and self._header is not None and self._footer is not None
        index, runs, consumed = self._block
        block_size = self._header.block_size
        take = min(len(view), block_size - consumed)
        base = index * block_size
        if consumed == 0:
            if base < self._disk_pos:
                raise VhdFormatError(f"block {index} comes after disk offset {self._disk_pos}; not a forward stream")
            self._zeros_to(min(base, self._footer.current_size), out)
        chunk_start, chunk_end = consumed, consumed + take
        limit = self._footer.current_size - base  # bytes of this block inside the disk
        # Only the runs this chunk overlaps: a bitmap of alternating sectors makes thousands of runs.
        first = bisect_right(self._run_ends, chunk_start)
        for start, end, present in runs[first:]:
            if start >= chunk_end:
                break
            lo, hi = max(start, chunk_start), min(end, chunk_end, limit)
            if lo >= hi:
                continue
            if present:
                out.append(Data(base + lo, bytes(view[lo - consumed : hi - consumed])))
            else:
                out.append(self._gap(base + lo, hi - lo))
            self._disk_pos = base + hi
        self._pos += take
        consumed += take
        if consumed == block_size:
            self._block = None
            self._next_block()
        else:
            self._block = (index, runs, consumed)
        return view[take:]


def decode(stream: bytes, parent: Optional[bytes] = None) -> bytes:
    """The raw disk held by a whole in-memory stream (tests and small tools).

    A differencing disk needs ``parent``, the parent's raw content, for what it leaves out.
    """
    decoder = StreamDecoder()
    pieces = decoder.feed(stream) + decoder.finish()
    out = bytearray()
    for piece in pieces:
        if isinstance(piece, Data):
            out += piece.data
        elif isinstance(piece, FromParent):
            if parent is None:
                raise VhdFormatError("a differencing disk cannot be read without its parent")
            out += parent[piece.offset : piece.offset + piece.length]
        else:
            out += bytes(piece.length)
    return bytes(out)


# --- Differencing disks (delta exports, ``base=``) -------------------------------------------
#
# vhd-tool's ``--relative-to`` stream is a dynamic stream with three changes: disk type 4 in the
# footer; the parent's unique id, time stamp and name in the dynamic header; and parent locator 0
# pointing at the empty sector at 1536. That locator is ocaml-vhd's ``from_filename``: platform
# code ``MacX``, data space 1 sector, data length = len("file://" + name), offset 1536. vhd-tool's
# stream leaves the sector it points at empty; here it holds the locator's data (the URL, UTF-8,
# zero-padded), as a differencing disk written to a file by ocaml-vhd does, so a reader that
# follows locators finds the parent's name. Blocks the BAT leaves unallocated, and sectors whose
# bitmap bit is 0, read as the parent's.

PARENT_LOCATOR_OFFSET = 1536
PLATFORM_MACX = b"MacX"
_LOCATOR = struct.Struct(">4sIIIQ")
_PARENT_FIELDS = 40  # offset of the parent unique id in the dynamic header
_PARENT_NAME = 64  # offset of the parent unicode name
_LOCATORS = 576  # offset of the 8 parent locator entries


def _check_parent(parent: ParentDisk) -> bytes:
    """The parent's name as UTF-16 BE, after checking every field fits its place."""
    if len(parent.unique_id) != 16:
        raise VhdFormatError("a parent unique id is 16 bytes")
    if not 0 <= parent.timestamp <= 0xFFFFFFFF:
        raise VhdFormatError(f"parent time stamp {parent.timestamp} does not fit 32 bits")
    name = parent.name.encode("utf-16-be")
    if not parent.name or len(name) > 512 or len(parent.locator_data) > SECTOR:
        raise VhdFormatError(f"parent name {parent.name!r} must be 1-256 UTF-16 units and its URL at most 512 bytes")
    return name


def encode_differencing_header(max_table_entries: int, parent: ParentDisk, block_size: int = BLOCK_SIZE) -> bytes:
    """The dynamic header of a differencing disk: parent fields and locator 0 set, checksum fixed."""
    name = _check_parent(parent)
    raw = bytearray(Header(max_table_entries, TABLE_OFFSET, block_size).encode())
    struct.pack_into(">16sI", raw, _PARENT_FIELDS, parent.unique_id, parent.timestamp)
    raw[_PARENT_NAME : _PARENT_NAME + len(name)] = name
    locator = _LOCATOR.pack(PLATFORM_MACX, 1, len(parent.locator_data), 0, PARENT_LOCATOR_OFFSET)
    raw[_LOCATORS : _LOCATORS + _LOCATOR.size] = locator
    struct.pack_into(">I", raw, 36, 0)
    struct.pack_into(">I", raw, 36, checksum(bytes(raw), 36))
    return bytes(raw)


def decode_parent(raw_header: bytes) -> ParentDisk:
    """The parent fields of a (checksum-verified) dynamic header."""
    unique_id, timestamp = struct.unpack_from(">16sI", raw_header, _PARENT_FIELDS)
    name_raw = raw_header[_PARENT_NAME : _PARENT_NAME + 512]
    units = [name_raw[i : i + 2] for i in range(0, len(name_raw), 2)]
    end = units.index(b"\0\0") if b"\0\0" in units else len(units)
    try:
        name = b"".join(units[:end]).decode("utf-16-be")
    except UnicodeDecodeError:
        raise VhdFormatError("the parent unicode name is not valid UTF-16") from None
    return ParentDisk(unique_id, timestamp, name)


def parent_locators(raw_header: bytes) -> List[Tuple[bytes, int, int, int]]:
    """(platform code, data space in sectors, data length, data offset) of each locator in use."""
    found = []
    for i in range(8):
        code, space, length, _, offset = _LOCATOR.unpack_from(raw_header, _LOCATORS + i * _LOCATOR.size)
        if code != bytes(4):
            found.append((code, space, length, offset))
    return found


def delta_layout(
    size: int, changed: Sequence[int], parent: ParentDisk, timestamp: int = 0, unique_id: bytes = bytes(16)
) -> StreamLayout:
    """Lay out a differencing disk holding only the blocks ``changed`` relative to ``parent``.

    Same order and length as ``layout``; only the footer's disk type, the header's parent fields
    and the locator sector differ, so the BAT and blocks are ``layout``'s own.
    """
    dynamic = layout(size, changed, timestamp, unique_id)
    footer = Footer(size, DISK_DIFFERENCING, timestamp, unique_id).encode()
    header = encode_differencing_header(block_count(size), parent)
    locator = parent.locator_data + bytes(SECTOR - len(parent.locator_data))
    prefix = footer + header + locator + dynamic.prefix[TABLE_OFFSET:]
    return StreamLayout(size, dynamic.blocks, footer, prefix)


def encode_delta(disk: bytes, parent_disk: bytes, parent: ParentDisk, timestamp: int = 0) -> bytes:
    """The whole differencing stream of in-memory disks (tests and small tools)."""
    if len(disk) != len(parent_disk):
        raise VhdFormatError(f"a differencing disk has its parent's size ({len(parent_disk)}), not {len(disk)}")
    changed = [
        i
        for i in range(block_count(len(disk)))
        if disk[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE] != parent_disk[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE]
    ]
    out = bytearray()
    for piece in delta_layout(len(disk), changed, parent, timestamp).pieces():
        if isinstance(piece, BlockRef):
            out += disk[piece.disk_offset : piece.disk_offset + piece.length]
            out += bytes(piece.padding)
        else:
            out += piece
    return bytes(out)
