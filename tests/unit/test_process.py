"""The process runner: output capture, failures in words, timeouts that kill the whole group."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from xcpbuild.adapters import process
from xcpbuild.errors import StepTimeoutError, ToolMissingError


def test_captures_output_and_streams_lines() -> None:
    seen: list[str] = []
    done = process.run(["sh", "-c", "echo one; echo two >&2"], on_line=seen.append)
    assert done.ok
    assert done.stdout == "one\n"
    assert done.stderr == "two\n"
    assert sorted(seen) == ["one", "two"]


def test_failure_names_the_command_and_its_last_line() -> None:
    with pytest.raises(process.CommandFailed) as info:
        process.run(["sh", "-c", "echo bad thing >&2; exit 3"])
    assert "exited with status 3" in info.value.message
    assert "bad thing" in info.value.message


def test_missing_tool_names_the_package() -> None:
    with pytest.raises(ToolMissingError) as info:
        process.require_tool("no-such-tool-xcpbuild")
    assert "apt-get install" in info.value.hint


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    start = time.monotonic()
    with pytest.raises(StepTimeoutError):
        process.run(["sh", "-c", f"sleep 60 & echo $! > {marker}; wait"], timeout=1)
    assert time.monotonic() - start < 15
    pid = int(marker.read_text())
    time.sleep(0.2)
    assert not _alive(pid), "the grandchild outlived its step"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie waiting for init to reap it is dead


def test_signal_is_described_in_words() -> None:
    assert process.describe_status(-9) == "was killed by SIGKILL"
    assert process.describe_status(2) == "exited with status 2"
