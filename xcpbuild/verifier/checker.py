"""Check the body as it arrives: decode VHD, hash the disk content, compare it with a disk, enforce sizes.

Sizes are checked as soon as they are declared (the Content-Length of a raw
export, the footer of a VHD stream, which arrives first), so an export of the
wrong size, or larger than the verifier accepts, fails before a byte of its
content is hashed. Runs of zeros (unallocated VHD blocks) are hashed from one
reusable buffer and compared with the expected disk by seeking over its holes;
the hash itself still sees every byte, at hashlib's speed.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from xcpbuild import vhd
from xcpbuild.verifier.delta import DeltaApplier, RawDeltaExpectation
from xcpbuild.verifier.schedule import Deadline

GiB = 1024**3
DEFAULT_MAX_SIZE = 64 * GiB
_ZEROS = memoryview(bytes(4 * 1024 * 1024))


class SizeRefused(Exception):
    """The export declares or sends a size the verifier was told not to accept."""


def vhd_stream_cap(size: int) -> int:
    """The most bytes a forward VHD stream of a ``size``-byte disk can hold: bitmaps, a full BAT, headers."""
    return size + size // 1024 + 4 * vhd.MAX_BAT_ENTRIES + 64 * 1024


class ContentChecker:
    """Consumes the body; the caller checks ``mismatch`` and ``finish()`` at the end."""

    def __init__(
        self,
        fmt: str,
        *,
        expect_disk: Path | None,
        expect_size: int | None,
        max_size: int | None,
        save_to: Path | None,
        deadline: Deadline,
        base_disk: Path | None = None,
    ) -> None:
        self.fmt = fmt
        self.decoder = vhd.StreamDecoder() if fmt == "vhd" else None
        self.hash = hashlib.sha256()
        self.deadline = deadline
        self.disk_fd = os.open(expect_disk, os.O_RDONLY | os.O_CLOEXEC) if expect_disk else None
        self.disk_size = os.lseek(self.disk_fd, 0, os.SEEK_END) if self.disk_fd is not None else None
        # A delta: a VHD one is applied onto the base; a raw one is compared with what XAPI sends.
        self.applier = DeltaApplier(base_disk) if base_disk and fmt == "vhd" else None
        self.raw_delta = (
            RawDeltaExpectation(self.disk_fd, base_disk) if base_disk and fmt == "raw" and self.disk_fd else None
        )
        self._expected = self.raw_delta.read if self.raw_delta else os.pread
        self.expect_size = expect_size if expect_size is not None else self.disk_size
        # Without an explicit cap, the expected size is the cap.
        self.max_size = max_size if max_size is not None else (self.expect_size or DEFAULT_MAX_SIZE)
        self.save = open(save_to, "wb") if save_to else None  # noqa: SIM115 - closed in close()
        self.declared: int | None = None  # the disk size the export declares
        self.raw_pos = 0
        self.body_bytes = 0
        self.mismatch: str | None = None
        self._holes = True  # the expected disk can say where its holes are (SEEK_DATA)

    def close(self) -> None:
        for extra in (self.applier, self.raw_delta):
            if extra is not None:
                extra.close()
        if self.disk_fd is not None:
            os.close(self.disk_fd)
        if self.save is not None:
            self.save.close()

    @property
    def body_cap(self) -> int:
        return self.max_size if self.decoder is None else vhd_stream_cap(self.max_size)

    def declare_length(self, length: int | None) -> None:
        """The response's Content-Length: for a raw export, the disk size; for a VHD, a bound."""
        if length is None:
            return
        if self.decoder is None:
            self._declare_size(length)
        elif length > self.body_cap:
            raise SizeRefused(f"the VHD stream is {length} bytes long, more than a disk of {self._cap_text()} can take")

    def feed(self, data: memoryview) -> None:
        self.body_bytes += len(data)
        if self.body_bytes > self.body_cap:
            raise SizeRefused(f"the body grew past {self.body_cap} bytes, more than a disk of {self._cap_text()}")
        if self.save is not None:
            self.save.write(data)
        if self.decoder is None:
            self._data(self.raw_pos, data)
            return
        pieces = self.decoder.feed(data)
        if self.declared is None and self.decoder.size is not None:
            self._declare_size(self.decoder.size)
        for piece in pieces:
            if self.applier is not None:
                self.applier.start(self.decoder)
                for offset, content in self.applier.apply(piece):
                    self._data(offset, content)
                if isinstance(piece, vhd.Zeros):
                    self._zeros(piece.offset, piece.length)
            elif isinstance(piece, vhd.Data):
                self._data(piece.offset, memoryview(piece.data))
            elif isinstance(piece, vhd.Zeros):
                self._zeros(piece.offset, piece.length)
            else:
                raise vhd.VhdFormatError("the export is a differencing VHD (a delta): pass --base-disk to apply it")

    def finish(self) -> int:
        """Check the stream ended properly; returns the disk size received."""
        if self.decoder is not None:
            self.decoder.finish()
        return self.raw_pos

    def vhd_error(self, exc: vhd.VhdFormatError) -> str:
        """What was wrong with the VHD stream, and where."""
        assert self.decoder is not None
        return f"invalid VHD stream at byte {self.decoder.position} (reading the {self.decoder.reading}): {exc}"

    def _cap_text(self) -> str:
        source = "--max-size" if self.expect_size is None or self.max_size != self.expect_size else "the expected size"
        return f"{self.max_size} bytes ({source})"

    def _declare_size(self, size: int) -> None:
        self.declared = size
        if self.expect_size is not None and size != self.expect_size:
            raise SizeRefused(f"the export declares a disk of {size} bytes, the expected disk has {self.expect_size}")
        if size > self.max_size:
            raise SizeRefused(f"the export declares a disk of {size} bytes, more than {self._cap_text()}")

    def _data(self, offset: int, data: memoryview) -> None:
        self.hash.update(data)
        if self.disk_fd is not None and self.mismatch is None:
            expected = self._expected(self.disk_fd, len(data), offset)
            if expected != data:
                self.mismatch = f"content differs from the disk near offset {offset + _first_diff(expected, data)}"
        self.raw_pos = offset + len(data)

    def _zeros(self, offset: int, length: int) -> None:
        end = offset + length
        if self.raw_delta is not None and self.mismatch is None:
            self._compare_expected_zeros(offset, end)
        elif self.disk_fd is not None and self.mismatch is None:
            self._compare_zeros(self.disk_fd, offset, end)
        at = offset
        while at < end:
            n = min(len(_ZEROS), end - at)
            self.hash.update(_ZEROS[:n])
            at += n
            self.deadline.check()
        self.raw_pos = end

    def _compare_expected_zeros(self, offset: int, end: int) -> None:
        """Like ``_compare_zeros`` for a raw delta, whose expected content is computed, not a file."""
        assert self.disk_fd is not None
        self._read_zeros(self._expected, self.disk_fd, offset, end)

    def _compare_zeros(self, fd: int, offset: int, end: int) -> None:
        """Record a mismatch when the disk has data in [offset, end); its holes are skipped, not read."""
        at = offset
        while at < end:
            data_end = end
            if self._holes:
                try:
                    at = os.lseek(fd, at, os.SEEK_DATA)
                    data_end = min(end, os.lseek(fd, at, os.SEEK_HOLE))
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # no data after ``at``: zeros to the end of the file
                        return
                    self._holes = False  # a file system or device without SEEK_DATA: read everything
                    continue
            if not self._read_zeros(os.pread, fd, at, data_end):
                return
            at = data_end

    def _read_zeros(self, read: Callable[[int, int, int], bytes], fd: int, at: int, end: int) -> bool:
        """Read [at, end) with ``read`` and record a mismatch at its first non-zero byte; False once done early."""
        while at < end:
            expected = read(fd, min(len(_ZEROS), end - at), at)
            if not expected:
                return False  # the disk is shorter: the size check reports it
            if expected != _ZEROS[: len(expected)]:
                nonzero = len(expected) - len(expected.lstrip(b"\0"))
                self.mismatch = f"the export has zeros where the disk has data near offset {at + nonzero}"
                return False
            at += len(expected)
            self.deadline.check()
        return True


def _first_diff(a: bytes, b: memoryview) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))
