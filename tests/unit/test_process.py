"""The process runner: output capture, failures in words, timeouts that kill the whole group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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


def test_a_wait_with_a_timeout_is_woken_by_the_exit_not_by_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Popen.wait(timeout) sleeps in steps of up to 50 ms between looks; the runner waits on a pidfd."""

    def no_polling(seconds: float) -> None:
        raise AssertionError(f"the wait polled (slept {seconds} s)")

    short, long = subprocess.Popen(["sleep", "0.2"]), subprocess.Popen(["sleep", "5"])
    try:
        with monkeypatch.context() as patched:
            patched.setattr(time, "sleep", no_polling)
            process._wait(short, 30)
            with pytest.raises(subprocess.TimeoutExpired):
                process._wait(long, 0.1)
        assert short.returncode == 0 and long.poll() is None
    finally:
        for child in (short, long):
            child.kill()
            child.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie waiting for init to reap it is dead


def test_signal_is_described_in_words() -> None:
    assert process.describe_status(-9) == "was killed by SIGKILL"
    assert process.describe_status(2) == "exited with status 2"


# -- interrupts: nothing the runner started outlives the Python waiting for it -----------------
def _interrupt_after(seconds: float, exc: type[BaseException]) -> None:
    def handler(_signum: int, _frame: object) -> None:
        raise exc(143) if exc is SystemExit else exc()

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)


@pytest.fixture
def _restore_alarm() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGALRM)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.usefixtures("_restore_alarm")
def test_ctrl_c_is_forwarded_as_sigint_and_the_child_reaped(tmp_path: Path) -> None:
    marker = tmp_path / "got"
    pidfile = tmp_path / "pid"
    script = f'echo $$ > {pidfile}; trap "echo INT > {marker}; exit 3" INT; sleep 30 & wait'
    _interrupt_after(0.5, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        process.run(["sh", "-c", script])
    assert marker.read_text().strip() == "INT", "the child did not see the SIGINT"
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists(), "the child was not reaped (a zombie is left)"


@pytest.mark.usefixtures("_restore_alarm")
def test_any_other_exception_terminates_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    _interrupt_after(0.5, SystemExit)
    start = time.monotonic()
    with pytest.raises(SystemExit):
        process.run(["sh", "-c", f"sleep 30 & echo $$ $! > {pidfile}; wait"])
    assert time.monotonic() - start < 5, "SIGTERM should have ended the group at once"
    leader, grandchild = (int(p) for p in pidfile.read_text().split())
    assert not Path(f"/proc/{leader}").exists()
    assert not _alive(grandchild), "the grandchild outlived the interrupted step"


def test_stop_group_escalates_to_sigkill_after_the_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        ["sh", "-c", f'trap "" TERM INT; echo ok > {ready}; while :; do sleep 0.1; done'], start_new_session=True
    )
    _wait_for(ready)
    start = time.monotonic()
    process.stop_group(proc, first=signal.SIGINT, grace=0.5)
    took = time.monotonic() - start
    assert proc.returncode == -signal.SIGKILL
    assert 1.0 <= took < 5, f"INT and TERM should each get the 0.5 s grace before KILL (took {took:.2f}s)"


def test_stop_group_stops_at_the_first_signal_that_works(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    start = time.monotonic()
    process.stop_group(proc, grace=5)
    assert proc.returncode == -signal.SIGTERM
    assert time.monotonic() - start < 2


CLI_LIKE = """
import signal, sys
from xcpbuild.adapters import process
def terminate(signum, frame):
    raise SystemExit(128 + signum)
signal.signal(signal.SIGTERM, terminate)
process.run(["sh", "-c", "echo $$ > " + sys.argv[1] + "; exec sleep 30"])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_python_leaves_no_child(tmp_path: Path, sig: signal.Signals) -> None:
    """The issue's reproduction: SIGTERM (or SIGINT) to the Python waiting in ``run``."""
    pidfile = tmp_path / "pid"
    python = subprocess.Popen([sys.executable, "-c", CLI_LIKE, str(pidfile)], stderr=subprocess.DEVNULL)
    _wait_for(pidfile)
    child = int(pidfile.read_text())
    python.send_signal(sig)
    code = python.wait(timeout=15)
    # SystemExit(143) from the handler; an uncaught KeyboardInterrupt ends Python by SIGINT itself.
    assert code == (143 if sig == signal.SIGTERM else -signal.SIGINT)
    assert not _alive(child), "the child outlived the Python that started it"


def _wait_for(path: Path, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def test_signals_during_the_start_are_held_then_acted_on() -> None:
    seen: list[str] = []

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(SystemExit) as info, process.signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            seen.append("the block ran to its end")
        assert info.value.code == 143
        assert seen == ["the block ran to its end"]
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


_TWO_PARTS = (
    "import sys; first = sys.stdin.readline(); print('early', first.strip(), flush=True);"
    " print('then', sys.stdin.read().strip())"
)


def test_a_conversation_gets_its_input_in_two_parts() -> None:
    with process.Conversation([sys.executable, "-c", _TWO_PARTS], "one\n") as talk:
        assert talk.proc is not None
        deadline = time.monotonic() + 10
        while not talk._out and time.monotonic() < deadline:  # it answers the first part before the rest exists
            time.sleep(0.01)
        assert talk._out == ["early one\n"]
        done = talk.finish("two\n", timeout=10)
    assert done.ok and done.stdout == "early one\nthen two\n"


def test_a_conversation_left_before_it_finishes_stops_the_child() -> None:
    with pytest.raises(RuntimeError), process.Conversation([sys.executable, "-c", _TWO_PARTS], "one\n") as talk:
        assert talk.proc is not None
        raise RuntimeError("the caller failed before the second part")
    assert talk.proc is not None and talk.proc.returncode is not None and talk.proc.returncode < 0


def test_a_conversation_that_runs_too_long_is_stopped() -> None:
    hang = "import sys, time; sys.stdin.read(); time.sleep(60)"
    with process.Conversation([sys.executable, "-c", hang], "") as talk, pytest.raises(StepTimeoutError):
        talk.finish("", timeout=0.5)
    assert talk.proc is not None and talk.proc.returncode is not None
