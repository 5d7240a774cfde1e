"""Check a delta export (``base=``) against the disk it should rebuild, as it arrives.

A delta is only worth something applied to its base, so this is what gets checked: every piece
the VHD decoder yields becomes disk content of the rebuilt disk. Data is the delta's own; what a
differencing disk leaves to its parent is read from the local copy of the base (``--base-disk``).
The rebuilt disk is then hashed and compared with ``--expect-disk`` like a full export.

A ``format=raw`` delta cannot be applied (XAPI sends zeros for the blocks that did not change,
which a client cannot tell from blocks zeroed since the base), so ``RawDeltaExpectation`` says
what such a body must hold instead: the new disk's block where it differs from the base's, zeros
elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from xcpbuild import vhd

_CHUNK = 1024 * 1024


class DeltaApplier:
    """Rebuilds a disk from a differencing VHD's decoded pieces and a local copy of its base."""

    def __init__(self, base_disk: Path) -> None:
        self.fd = os.open(base_disk, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.lseek(self.fd, 0, os.SEEK_END)
        self.parent: vhd.ParentDisk | None = None

    def close(self) -> None:
        os.close(self.fd)

    def start(self, decoder: vhd.StreamDecoder) -> None:
        """Check, once the header is read, that the stream is a delta that fits this base."""
        if self.parent is not None or decoder.size is None:
            return
        if decoder.parent is None:
            raise vhd.VhdFormatError("--base-disk was given but the export is not a differencing VHD (disk type 4)")
        if decoder.size != self.size:
            raise vhd.VhdFormatError(f"the delta is of a {decoder.size}-byte disk, the base disk has {self.size} bytes")
        self.parent = decoder.parent

    def apply(self, piece: vhd.Piece) -> Iterator[tuple[int, memoryview]]:
        """(disk offset, content) of the rebuilt disk for one decoded piece; zeros come as Zeros."""
        if isinstance(piece, vhd.Data):
            yield piece.offset, memoryview(piece.data)
        elif isinstance(piece, vhd.FromParent):
            offset, end = piece.offset, piece.offset + piece.length
            while offset < end:
                chunk = os.pread(self.fd, min(_CHUNK, end - offset), offset)
                if not chunk:
                    raise vhd.VhdFormatError(f"the base disk ends at {offset}, before the delta's {end}")
                yield offset, memoryview(chunk)
                offset += len(chunk)


class RawDeltaExpectation:
    """What a ``format=raw`` delta must hold: NEW's block where it differs from BASE's, else zeros."""

    def __init__(self, new_fd: int, base_disk: Path, block_size: int = vhd.BLOCK_SIZE) -> None:
        self._new = new_fd
        self._base = os.open(base_disk, os.O_RDONLY | os.O_CLOEXEC)
        self._block_size = block_size
        self._changed: dict[int, bool] = {}

    def close(self) -> None:
        os.close(self._base)

    def _differs(self, index: int) -> bool:
        if index not in self._changed:
            at = index * self._block_size
            self._changed[index] = os.pread(self._new, self._block_size, at) != os.pread(
                self._base, self._block_size, at
            )
            if len(self._changed) > 4096:  # the body comes in order: older blocks are done with
                self._changed.pop(next(iter(self._changed)))
        return self._changed[index]

    def read(self, _fd: int, length: int, offset: int) -> bytes:
        """The ``length`` bytes expected at ``offset``: a stand-in for ``os.pread`` on the new disk."""
        out = bytearray()
        end = offset + length
        while offset < end:
            index = offset // self._block_size
            n = min(end, (index + 1) * self._block_size) - offset
            out += os.pread(self._new, n, offset) if self._differs(index) else bytes(n)
            offset += n
        return bytes(out)
