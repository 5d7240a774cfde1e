"""The one place that starts host processes.

Commands run with stdin from /dev/null, in their own process group, with their
output captured (and optionally streamed line by line to a callback or a log
file). A timeout escalates SIGTERM -> SIGKILL on the whole group, as mock does,
so no grandchild outlives its step. Failures become xcpbuild errors.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xcpbuild.errors import StepTimeoutError, ToolMissingError, XcpbuildError
from xcpbuild.log import get_logger

log = get_logger("process")

# Hints for host tools, keyed by executable: which Debian package brings it.
TOOL_PACKAGES: dict[str, str] = {
    "rpmbuild": "rpm",
    "rpm": "rpm",
    "rpmsign": "rpm",
    "rpmkeys": "rpm",
    "rpmspec": "rpm",
    "createrepo_c": "createrepo-c",
    "dnf": "dnf",
    "gpg": "gnupg",
    "gpgv": "gpgv",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "git": "git",
    "patch": "patch",
    "nginx": "nginx-light",
    "nsenter": "util-linux",
}


@dataclass(frozen=True)
class Completed:
    """A finished command: its argv, exit status and captured output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandFailed(XcpbuildError):
    """A host command exited non-zero (callers usually re-raise a more specific error)."""

    exit_code = 1

    def __init__(self, completed: Completed, hint: str | None = None) -> None:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or [""]
        super().__init__(
            f"`{shlex.join(completed.argv)}` {describe_status(completed.returncode)}: {tail[0]}",
            hint,
        )
        self.completed = completed


def describe_status(returncode: int) -> str:
    """Turn an exit status into words (negative = killed by a signal)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


def which(tool: str) -> str | None:
    """Path of ``tool`` on PATH (also looking in sbin dirs, where root tools live)."""
    found = shutil.which(tool)
    if found:
        return found
    for extra in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        candidate = Path(extra) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_tool(tool: str) -> str:
    """Path of ``tool`` or a ToolMissingError naming the Debian package that brings it."""
    path = which(tool)
    if path is None:
        package = TOOL_PACKAGES.get(tool, tool)
        raise ToolMissingError(
            f"`{tool}` is not installed",
            hint=f"install it (on Debian: apt-get install -y {package}), then check with `xcpbuild doctor`",
        )
    return path


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float | None = None,
    check: bool = True,
    on_line: Callable[[str], None] | None = None,
) -> Completed:
    """Run ``argv`` to completion.

    ``env`` entries are added to the current environment (LC_ALL=C is forced so
    tools' messages are parseable). ``on_line`` receives each stdout/stderr line
    as it arrives, for live logs. On timeout the process group is terminated,
    then killed, and StepTimeoutError raised; on an interrupt it is stopped the
    same way (``Supervised``) before the interrupt goes on.
    """
    args = tuple(str(a) for a in argv)
    log.debug("+ %s", shlex.join(args))
    out_lines: list[str] = []
    err_lines: list[str] = []
    with Supervised() as guard:
        with signals_deferred():  # an interrupt inside Popen would lose the child it just forked
            guard.proc = proc = _popen(args, cwd=cwd, env=env, stdin=input_text is not None)
        threads = _pumps(proc, out_lines, err_lines, on_line)
        if input_text is not None and proc.stdin is not None:
            try:
                proc.stdin.write(input_text)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            _wait(proc, timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            stop_group(proc)
            timed_out = True
        # A daemon the command left behind (gpg-agent, say) may hold our pipes open: do not wait for it forever.
        _join(threads, PIPE_GRACE)
    if timed_out:
        raise StepTimeoutError(f"`{shlex.join(args)}` exceeded its {timeout:.0f}s time limit and was killed")
    completed = Completed(args, proc.returncode, "".join(out_lines), "".join(err_lines))
    if check and not completed.ok:
        raise CommandFailed(completed)
    return completed


def _wait(proc: subprocess.Popen[Any], timeout: float | None) -> None:
    """``proc.wait(timeout)``, woken by the exit itself.

    Given a timeout, ``Popen.wait`` polls with sleeps that double up to 50 ms, so a
    command that takes 40 ms is seen ending at 63 ms; a pidfd becomes readable when
    the process exits. ``subprocess.TimeoutExpired`` as ``wait`` raises it.
    """
    if timeout is None or proc.returncode is not None:
        proc.wait()
        return
    try:
        fd = os.pidfd_open(proc.pid)  # not reaped yet (returncode is None): the pid is still this process's
    except OSError:  # a kernel without pidfds
        proc.wait(timeout=timeout)
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    proc.wait()


def _popen(
    args: tuple[str, ...], *, cwd: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None, stdin: bool
) -> subprocess.Popen[str]:
    """``args`` started in its own process group with LC_ALL=C (tools' messages stay parseable) and
    ``env`` added, stdout and stderr piped as text, stdin piped or /dev/null. Call it with signals
    deferred and keep the process before they are acted on."""
    full_env = {**os.environ, "LC_ALL": "C", **(env or {})}
    try:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        tool = Path(args[0]).name
        raise ToolMissingError(
            f"`{args[0]}` is not installed",
            hint=f"install it (on Debian: apt-get install -y {TOOL_PACKAGES.get(tool, tool)})",
        ) from exc


def _pumps(
    proc: subprocess.Popen[str], out: list[str], err: list[str], on_line: Callable[[str], None] | None = None
) -> list[threading.Thread]:
    """Started threads collecting ``proc``'s stdout and stderr lines (and handing each to ``on_line``)."""

    def pump(stream: object, sink: list[str]) -> None:
        assert hasattr(stream, "readline")
        for line in iter(stream.readline, ""):
            sink.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))

    threads = [
        threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err), daemon=True),
    ]
    for thread in threads:
        thread.start()
    return threads


# How long a stopped group gets between SIGTERM and SIGKILL, and readers to drain the pipes.
GRACE = 5.0
PIPE_GRACE = 5.0


def _join(threads: Sequence[threading.Thread], grace: float) -> None:
    deadline = time.monotonic() + grace
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs, then act on them as their handlers would.

    Python runs signal handlers only in the main thread, so elsewhere there is nothing to hold.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in _INTERRUPTS}
    # An ignored signal stays ignored (children inherit that); None: not set from Python, left alone.
    held = {sig: handler for sig, handler in previous.items() if handler not in (None, signal.SIG_IGN)}
    for sig in held:
        signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
        for signum in caught:
            handler = held[signal.Signals(signum)]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


class Supervised:
    """Never leave a child's process group behind when the waiting Python is interrupted.

    Ctrl-C (KeyboardInterrupt) is forwarded to the group as SIGINT, so the tool
    can clean up as it would at a terminal; any other exception (SystemExit from
    the CLI's SIGTERM handler, an error in our own code) terminates the group.
    Either way the group is escalated to SIGKILL after a grace period and the
    child is reaped before the exception goes on. Set ``proc`` in the same
    statement that starts the child.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[Any] | None = None

    def __enter__(self) -> Supervised:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None or self.proc is None:
            return
        if issubclass(exc_type, KeyboardInterrupt):
            stop_group(self.proc, first=signal.SIGINT)
        else:
            stop_group(self.proc)


def stop_group(proc: subprocess.Popen[Any], *, first: signal.Signals = signal.SIGTERM, grace: float = GRACE) -> None:
    """Stop ``proc``'s process group: ``first`` signal, SIGTERM, then SIGKILL, ``grace`` seconds apart; reap it.

    The only TERM -> KILL routine: timeouts, interrupts and daemons all end here.
    A second interrupt while waiting goes straight to SIGKILL; the routine still
    reaps the child, then lets that interrupt go on.
    """
    ladder = [first, *(s for s in (signal.SIGTERM, signal.SIGKILL) if s != first)]
    pending: BaseException | None = None
    while ladder:
        sig = ladder.pop(0)
        try:
            _signal_group(proc, sig)
            if sig == signal.SIGKILL:
                proc.wait()
                break
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
        except BaseException as exc:  # interrupted again while stopping: hurry
            pending = pending or exc
            ladder = [signal.SIGKILL]
    # The leader is reaped; members of its group that outlived it get the last word too.
    _signal_group(proc, signal.SIGKILL)
    if pending is not None:
        raise pending


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        # PermissionError: the group is gone and its id was reused by someone else's process.
        pass


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    stdout_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running background process (a daemon) writing to ``stdout_path``.

    The caller owns the returned process and must stop it (``stop``).
    """
    args = [str(a) for a in argv]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    log.debug("+ %s &", shlex.join(args))
    stdout_path.parent.mkdir(parents=True, exist_ok=True)
    with open(stdout_path, "ab") as out:
        try:
            return subprocess.Popen(
                args,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise ToolMissingError(f"`{args[0]}` is not installed") from exc


class Conversation:
    """A command given its input in two parts: started with the first, finished later with the rest.

    For a helper that does what it can with the first part (imports, loading) while
    the caller prepares the second. Its own process group, LC_ALL=C, output captured
    as ``run`` does. Use it as a context manager: leaving it before ``finish`` (an
    error, an interrupt) stops the group, so nothing outlives the caller's step.
    """

    def __init__(self, argv: Sequence[str | os.PathLike[str]], first: str) -> None:
        self.argv = tuple(str(a) for a in argv)
        self.first = first
        self.proc: subprocess.Popen[str] | None = None
        self._out: list[str] = []
        self._err: list[str] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Conversation:
        log.debug("+ %s (in two parts)", shlex.join(self.argv))
        with signals_deferred():  # an interrupt inside Popen would lose the child it just forked
            self.proc = _popen(self.argv, env=None, stdin=True)
        self._threads = _pumps(self.proc, self._out, self._err)
        self._write(self.first, close=False)
        return self

    def _write(self, text: str, *, close: bool) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(text)
            self.proc.stdin.flush()
            if close:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it ended early: its output says why

    def send(self, rest: str) -> None:
        """Send the rest of the input (the command goes on; ``finish`` waits for it)."""
        assert self.proc is not None
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self._write(rest, close=True)

    def finish(self, rest: str, timeout: float) -> Completed:
        """Send the rest of the input unless ``send`` did, wait for the end; StepTimeoutError (group stopped)
        after ``timeout``."""
        assert self.proc is not None
        self.send(rest)
        try:
            _wait(self.proc, timeout)
        except subprocess.TimeoutExpired:
            stop_group(self.proc)
            raise StepTimeoutError(
                f"`{shlex.join(self.argv)}` exceeded its {timeout:.0f}s time limit and was killed"
            ) from None
        _join(self._threads, PIPE_GRACE)
        return Completed(self.argv, self.proc.returncode, "".join(self._out), "".join(self._err))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            stop_group(self.proc, first=signal.SIGINT if exc_type is KeyboardInterrupt else signal.SIGTERM)
        _join(self._threads, PIPE_GRACE)


def stop(proc: subprocess.Popen[bytes], grace: float = GRACE) -> None:
    """Stop a process started with ``spawn`` (its whole group): SIGTERM, then SIGKILL after ``grace``."""
    if proc.poll() is None:
        stop_group(proc, grace=grace)


def interactive(argv: Sequence[str | os.PathLike[str]]) -> int:
    """Run ``argv`` on this terminal (stdin, stdout and stderr inherited) and return its exit status.

    For an interactive shell only: it stays in our process group so the terminal's
    Ctrl-C reaches it, and it is waited for whatever happens. Anything else that
    ends the wait (SIGTERM's SystemExit) ends the shell too, before going on.
    """
    args = [str(a) for a in argv]
    log.debug("+ %s (interactive)", shlex.join(args))
    try:
        proc = subprocess.Popen(args)
    except FileNotFoundError as exc:
        raise ToolMissingError(f"`{args[0]}` is not installed", hint="install the docker client") from exc
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue  # the shell got the Ctrl-C too; it decides whether to end
        except BaseException:
            # Our own group: signal the process alone, never the group (that is us too).
            proc.terminate()
            try:
                proc.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
