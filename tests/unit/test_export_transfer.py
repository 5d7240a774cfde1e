"""The EAGAIN policies on real non-blocking sockets (a local socket pair, no network)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from xcpbuild.errors import ServerError
from xcpbuild.exportserver.disk import allocated_blocks, parse_disk
from xcpbuild.exportserver.transfer import ClientGone, EagainMode, EagainPolicy, IdleTimeout, Sender, StreamAborted

MiB = 1024 * 1024


def test_policy_parsing() -> None:
    assert EagainPolicy.parse("wait") == EagainPolicy(EagainMode.WAIT)
    assert EagainPolicy.parse("legacy-retry") == EagainPolicy(EagainMode.LEGACY_RETRY, 20, 0.1)
    assert EagainPolicy.parse("legacy-retry:200000:0.1") == EagainPolicy(EagainMode.LEGACY_RETRY, 200000, 0.1)
    for bad in ("", "sleep", "legacy-retry:5", "legacy-retry:x:1", "legacy-retry:5:0", "wait:1:1"):
        with pytest.raises(ValueError):
            EagainPolicy.parse(bad)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    data = os.urandom(8 * MiB)
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return a, b


def _reader(sock: socket.socket, pause: float, out: bytearray) -> threading.Thread:
    def read() -> None:
        time.sleep(pause)
        while chunk := sock.recv(1 << 20):
            out.extend(chunk)

    thread = threading.Thread(target=read)
    thread.start()
    return thread


def test_wait_policy_survives_a_reader_pausing_longer_than_the_legacy_budget(disk: tuple[int, bytes]) -> None:
    fd, data = disk
    server, client = _pair()
    got = bytearray()
    reader = _reader(client, 0.5, got)
    sender = Sender(server, EagainPolicy.parse("wait"))
    sender.send_file(fd, 0, len(data))
    server.close()
    reader.join()
    client.close()
    assert bytes(got) == data and sender.sent == len(data)


def test_legacy_policy_aborts_when_the_reader_pauses_past_its_budget(disk: tuple[int, bytes]) -> None:
    fd, data = disk
    server, client = _pair()
    got = bytearray()
    reader = _reader(client, 0.5, got)  # 0.5 s pause > 5 x 0.02 s of retries
    sender = Sender(server, EagainPolicy.parse("legacy-retry:5:0.02"))
    with pytest.raises(StreamAborted, match=r'Unix\.EAGAIN, "sendfile"'):
        sender.send_file(fd, 0, len(data))
    server.close()
    reader.join()
    client.close()
    assert 0 < len(got) < len(data)
    assert bytes(got) == data[: len(got)]


def test_legacy_policy_waits_for_metadata_sent_from_a_file(disk: tuple[int, bytes]) -> None:
    # VHD bitmaps go out by sendfile too; the legacy retry budget must still apply to disk data only.
    fd, data = disk
    server, client = _pair()
    got = bytearray()
    reader = _reader(client, 0.5, got)
    sender = Sender(server, EagainPolicy.parse("legacy-retry:5:0.02"))
    sender.send_file(fd, 0, len(data), disk_data=False)
    server.close()
    reader.join()
    client.close()
    assert bytes(got) == data and sender.sent == len(data)


def test_an_idle_timeout_ends_a_stalled_stream_only_when_set(disk: tuple[int, bytes]) -> None:
    fd, data = disk
    server, client = _pair()
    sender = Sender(server, EagainPolicy(), idle_timeout=0.2)
    with pytest.raises(IdleTimeout):
        sender.send_file(fd, 0, len(data))
    server.close()
    client.close()


def test_a_client_that_goes_away_is_reported(disk: tuple[int, bytes]) -> None:
    fd, data = disk
    server, client = _pair()
    threading.Timer(0.2, client.close).start()
    with pytest.raises(ClientGone):
        Sender(server, EagainPolicy()).send_file(fd, 0, len(data))
    server.close()


def test_seek_data_finds_only_blocks_holding_data(tmp_path: Path) -> None:
    path = tmp_path / "sparse.raw"
    block = 2 * MiB
    with open(path, "wb") as f:
        f.truncate(5 * block + 4096)
        f.seek(block + 12345)
        f.write(b"x")
        f.seek(4 * block)
        f.write(b"y" * 8192)
    fd = os.open(path, os.O_RDONLY)
    try:
        blocks = allocated_blocks(fd, 5 * block + 4096, block)
    finally:
        os.close(fd)
    # A filesystem that reports no holes makes every block look allocated: that is the failure
    # this test exists to catch (exports would then stream a sparse disk in full), not a reason to skip.
    assert blocks == [1, 4], f"SEEK_DATA found data in blocks {blocks} of {path}'s filesystem"


def test_disk_arguments_are_checked(tmp_path: Path) -> None:
    (tmp_path / "d.raw").write_bytes(b"x")
    assert parse_disk(f"d1={tmp_path / 'd.raw'}").name == "d1"
    for bad in ("nodisk", "=x", f"../d={tmp_path / 'd.raw'}", f"d={tmp_path / 'missing'}", f"d={tmp_path}"):
        with pytest.raises(ServerError):
            parse_disk(bad)
