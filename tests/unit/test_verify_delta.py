"""The verifier on delta exports: applied onto the base while downloading, refused without it."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from xcpbuild import verifier as verify
from xcpbuild.errors import UsageError
from xcpbuild.exportserver.disk import Disk
from xcpbuild.exportserver.server import ExportServer

MiB = 1024 * 1024


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    base = bytearray(7 * MiB)
    base[100:200] = b"b" * 100
    base[5 * MiB : 5 * MiB + 9] = b"base only"
    new = bytearray(base)
    new[4 * MiB + 1] = 1  # block 2
    new[5 * MiB : 5 * MiB + 9] = bytes(9)  # block 2 too: zeroed since the base
    new[-1] = 0xEE  # block 3, the last, partial one
    paths = tmp_path / "base.raw", tmp_path / "new.raw"
    for path, data in zip(paths, (base, new), strict=True):
        path.write_bytes(bytes(data))
    server = ExportServer([Disk("base", paths[0]), Disk("new", paths[1])], "tok")
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"{server.url}/export_raw_vdi?vdi=new&base=base", paths[0], paths[1]
    server.shutdown()
    thread.join()


def test_a_vhd_delta_applied_onto_its_base_is_the_new_disk(pair: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, base, new = pair
    report = verify.backpressure(url, token="tok", fmt="vhd", expect_disk=new, base_disk=base)
    assert report.outcome == "complete" and report.match is True, report
    assert "applied onto" in (report.expected or "")
    digest = hashlib.sha256(new.read_bytes()).hexdigest()
    assert report.sha256 == digest
    report = verify.backpressure(url, token="tok", fmt="vhd", expect_sha256=digest, base_disk=base)
    assert report.match is True, "the digest is of the rebuilt disk"
    # Applied onto the wrong base, the rebuilt disk differs where the delta leaves blocks to the parent.
    report = verify.backpressure(url, token="tok", fmt="vhd", expect_disk=new, base_disk=new)
    assert report.match is True  # new's unchanged blocks are base's
    wrong = tmp_path / "wrong.raw"
    wrong.write_bytes(bytes(7 * MiB))
    report = verify.backpressure(url, token="tok", fmt="vhd", expect_disk=new, base_disk=wrong)
    assert report.match is False and "near offset 100" in report.detail


def test_a_delta_needs_its_base_and_a_base_needs_a_delta(pair: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, base, new = pair
    report = verify.backpressure(url, token="tok", fmt="vhd", expect_disk=new)
    assert not report.ok and "pass --base-disk" in report.detail
    full_url = url.replace("&base=base", "")
    with pytest.raises(UsageError, match="no base= parameter"):
        verify.backpressure(full_url, token="tok", fmt="vhd", base_disk=base)
    with pytest.raises(UsageError, match="--expect-disk"):
        verify.backpressure(url, token="tok", fmt="raw", base_disk=base)
    short = tmp_path / "short.raw"
    short.write_bytes(bytes(MiB))
    report = verify.backpressure(url, token="tok", fmt="vhd", expect_disk=new, base_disk=short)
    assert not report.ok and "base disk has 1048576 bytes" in report.detail


def test_a_raw_delta_is_checked_as_xapi_sends_it(pair: tuple[str, Path, Path]) -> None:
    url, base, new = pair
    report = verify.backpressure(url, token="tok", fmt="raw", expect_disk=new, base_disk=base)
    assert report.outcome == "complete" and report.match is True, report
    report = verify.backpressure(url, token="tok", fmt="raw", expect_disk=new)
    assert report.match is False, "unchanged blocks come as zeros: not the new disk itself"
