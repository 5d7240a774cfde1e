"""Delta exports (``base=``) from a real server process, read back by independent readers.

libvhdi (vhdiinfo, pyvhdi with the parent supplied) must rebuild the new disk from the delta and
the base's own full VHD export; the verifier applies the delta onto the base while downloading.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need, need_tool
from tests.integration.test_export_server import TOKEN, Server, _cli_verify, _exchange, start_server
from xcpbuild import verifier as verify
from xcpbuild import vhd
from xcpbuild.adapters import process

MiB = 1024 * 1024
BLOCK = vhd.BLOCK_SIZE
SIZE = 9 * BLOCK + 1536  # 10 blocks, the last one partial


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    assert [s.stop() for s in servers] == [0] * len(servers), "SIGTERM must stop the server cleanly"


def _write(path: Path, size: int, writes: dict[int, bytes], full: bytes | None = None) -> Path:
    with open(path, "wb") as f:
        if full is not None:
            f.write(full)
        f.truncate(size)
        for offset, data in writes.items():
            f.seek(offset)
            f.write(data)
    return path


# (what changes, the writes that make the new disk from the base, the blocks that then differ)
CHANGES = {
    "scattered": ({2 * BLOCK + 999: b"two", 5 * BLOCK: os.urandom(4096), 7 * BLOCK - 2: b"6+7"}, [2, 5, 6, 7]),
    "first-and-last": ({0: b"first sector", SIZE - 7: b"the end"}, [0, 9]),
    "nothing": ({}, []),
}


def _disks(tmp_path: Path, kind: str, change: str) -> tuple[Path, Path]:
    if kind == "sparse":
        base_writes = {777: b"base data", 4 * BLOCK + 5: os.urandom(3000), SIZE - 100: b"tail"}
        base = _write(tmp_path / "base.raw", SIZE, base_writes)
    else:
        base = _write(tmp_path / "base.raw", SIZE, {}, full=os.urandom(SIZE))
    new = tmp_path / "new.raw"
    new.write_bytes(base.read_bytes())
    return base, _write(new, SIZE, CHANGES[change][0], full=base.read_bytes())


def _url(server: Server, vdi: str, fmt: str, base: str | None = None) -> str:
    return server.export(vdi, fmt) + (f"&base={base}" if base else "")


@pytest.mark.parametrize("kind", ["sparse", "full"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_libvhdi_rebuilds_the_new_disk_from_the_delta_and_its_parent(
    tmp_path: Path, started: list[Any], kind: str, change: str
) -> None:
    need_tool("vhdiinfo", "qemu-img")
    try:
        import pyvhdi
    except ImportError:
        need(False, "libvhdi-python (pyvhdi)")
        raise
    base, new = _disks(tmp_path, kind, change)
    server = start_server(tmp_path, {"base": base, "new": new})
    started.append(server)
    parent_vhd, delta_vhd = tmp_path / "base.vhd", tmp_path / "delta.vhd"
    # The parent as a client has it: the base's own full VHD export, saved under its file name.
    report = verify.backpressure(_url(server, "base", "vhd"), token=TOKEN, expect_disk=base, save_to=parent_vhd)
    assert report.ok and report.match is True, report
    report = verify.backpressure(
        _url(server, "new", "vhd", base="base"), token=TOKEN, expect_disk=new, base_disk=base, save_to=delta_vhd
    )
    assert report.ok and report.match is True, report
    changed = CHANGES[change][1]
    assert report.content_length == vhd.stream_length(SIZE, len(changed)) == delta_vhd.stat().st_size

    stream = delta_vhd.read_bytes()
    footer, header = vhd.Footer.decode(stream[:512]), stream[512:1536]
    assert footer.disk_type == vhd.DISK_DIFFERENCING and footer.current_size == SIZE
    bat = struct.unpack(f">{vhd.block_count(SIZE)}I", stream[2048 : 2048 + 4 * vhd.block_count(SIZE)])
    assert [i for i, e in enumerate(bat) if e != vhd.UNALLOCATED] == changed
    parent = vhd.decode_parent(header)
    parent_footer = vhd.Footer.decode(parent_vhd.read_bytes()[:512])
    assert parent.unique_id == parent_footer.unique_id != bytes(16), "the header names the parent's unique id"
    assert parent.timestamp == parent_footer.timestamp and parent.name == "base.vhd"
    assert vhd.parent_locators(header) == [(b"MacX", 1, len(b"file://base.vhd"), 1536)]

    info = process.run(["vhdiinfo", delta_vhd]).stdout
    assert "Differential" in info and "Parent filename\t\t: base.vhd" in info
    uuid_text = "-".join(
        (
            parent.unique_id.hex()[:8],
            parent.unique_id.hex()[8:12],
            parent.unique_id.hex()[12:16],
            parent.unique_id.hex()[16:20],
            parent.unique_id.hex()[20:],
        )
    )
    assert f"Parent identifier\t: {uuid_text}" in info

    child, parent_file = pyvhdi.file(), pyvhdi.file()
    child.open(str(delta_vhd))
    parent_file.open(str(parent_vhd))
    try:
        assert child.get_parent_identifier() == parent_file.get_identifier() == uuid_text
        child.set_parent(parent_file)
        assert child.get_media_size() == SIZE
        assert child.read_buffer(SIZE) == new.read_bytes(), "libvhdi reads the delta over its parent byte-exact"
    finally:
        child.close()
        parent_file.close()

    # qemu's vpc driver has no backing-file support for differencing VHDs (qemu-img info shows no
    # backing file): it reads a delta on its own, unallocated blocks as zeros. That is exactly the
    # changed blocks with zeros elsewhere, which the test checks instead of the rebuilt disk.
    qemu_info = json.loads(process.run(["qemu-img", "info", "-f", "vpc", "--output", "json", delta_vhd]).stdout)
    assert "backing-filename" not in qemu_info and qemu_info["virtual-size"] == SIZE
    converted = tmp_path / "qemu.raw"
    process.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", delta_vhd, converted])
    assert converted.read_bytes() == _raw_delta(new.read_bytes(), changed)


def _raw_delta(new: bytes, changed: list[int]) -> bytes:
    """What XAPI sends for format=raw&base=: the changed blocks' data, zeros elsewhere."""
    out = bytearray(len(new))
    for i in changed:
        out[i * BLOCK : (i + 1) * BLOCK] = new[i * BLOCK : (i + 1) * BLOCK]
    return bytes(out)


def test_a_raw_delta_holds_the_changed_blocks_and_zeros_as_xapi_sends_it(tmp_path: Path, started: list[Any]) -> None:
    base, new = _disks(tmp_path, "full", "scattered")
    server = start_server(tmp_path, {"base": base, "new": new})
    started.append(server)
    saved = tmp_path / "delta.raw"
    report = verify.backpressure(
        _url(server, "new", "raw", base="base"), token=TOKEN, expect_disk=new, base_disk=base, save_to=saved
    )
    assert report.ok and report.match is True, report
    assert saved.read_bytes() == _raw_delta(new.read_bytes(), CHANGES["scattered"][1])
    # The same body checked as a plain export of the new disk is a mismatch: it is not the disk.
    report = verify.backpressure(_url(server, "new", "raw", base="base"), token=TOKEN, expect_disk=new)
    assert report.match is False


def test_bad_delta_requests_get_a_clear_4xx_and_no_body(tmp_path: Path, started: list[Any]) -> None:
    base, new = _disks(tmp_path, "sparse", "scattered")
    small = _write(tmp_path / "small.raw", SIZE - BLOCK, {0: b"x"})
    server = start_server(tmp_path, {"base": base, "new": new, "small": small})
    started.append(server)
    port = int(server.url.rsplit(":", 1)[1])
    for query, status, reason in [
        ("vdi=new&base=small&format=vhd", 400, "equal sizes"),
        ("vdi=new&base=small&format=raw", 400, "equal sizes"),
        ("vdi=new&base=missing&format=vhd", 404, "no such base vdi"),
        ("vdi=new&base=new&format=vhd", 400, "the vdi itself"),
        ("vdi=new&base=..%2Fbase.raw&format=vhd", 404, "no such base vdi"),
    ]:
        request = f"GET /export_raw_vdi?session_id={TOKEN}&{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        code, headers, body = _exchange(port, request)
        assert code == status and reason in body.decode(), (query, code, body)
        assert headers["content-type"].startswith("text/plain")


def test_a_10s_stall_completes_a_delta_with_wait_and_truncates_it_with_legacy_retry(
    tmp_path: Path, started: list[Any]
) -> None:
    # Every other block of 64 MiB changed: a 32 MiB delta, far more than the socket buffers hold.
    size = 32 * BLOCK
    base = _write(tmp_path / "base.raw", size, {}, full=os.urandom(size))
    new = _write(
        tmp_path / "new.raw", size, {i * BLOCK + 5: os.urandom(100) for i in range(0, 32, 2)}, full=base.read_bytes()
    )
    wait = start_server(tmp_path, {"base": base, "new": new})
    legacy = start_server(tmp_path, {"base": base, "new": new}, "--eagain-policy", "legacy-retry")
    started += [wait, legacy]
    args = ["--stall", "10@0.3", "--expect-disk", str(new), "--base-disk", str(base)]
    runs = {
        name: _cli_verify(_url(server, "new", "vhd", base="base"), *args)
        for name, server in (("wait", wait), ("legacy", legacy))
    }
    results = {}
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = (proc.returncode, json.loads(out), err)
    code, report, _ = results["wait"]
    assert code == 0 and report["outcome"] == "complete" and report["match"] is True, report
    assert report["content_length"] == vhd.stream_length(size, 16) == report["bytes_received"]
    assert report["duration_s"] >= 10
    assert any("differencing VHD of parent 'base.vhd'" in e for e in report["events"]), report["events"]
    code, report, err = results["legacy"]
    assert code == 14 and report["outcome"] == "truncated" and report["match"] is False, report
    assert report["bytes_received"] < report["content_length"] and "truncated" in err
    legacy_log = legacy.log.read_text()
    assert "base=base" in legacy_log and "VDI_IO_ERROR" in legacy_log
    assert "VDI_IO_ERROR" not in wait.log.read_text()
