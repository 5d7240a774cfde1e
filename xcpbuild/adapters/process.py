"""The one place that starts host processes.

Commands run with stdin from /dev/null, in their own process group, with their
output captured (and optionally streamed line by line to a callback or a log
file). A timeout escalates SIGTERM -> SIGKILL on the whole group, as mock does,
so no grandchild outlives its step. Failures become xcpbuild errors.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
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
    then killed, and StepTimeoutError raised.
    """
    args = tuple(str(a) for a in argv)
    full_env = dict(os.environ)
    full_env["LC_ALL"] = "C"
    if env:
        full_env.update(env)
    log.debug("+ %s", shlex.join(args))
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
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

    out_lines: list[str] = []
    err_lines: list[str] = []

    def pump(stream: object, sink: list[str]) -> None:
        assert hasattr(stream, "readline")
        for line in iter(stream.readline, ""):
            sink.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))

    threads = [
        threading.Thread(target=pump, args=(proc.stdout, out_lines), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err_lines), daemon=True),
    ]
    for thread in threads:
        thread.start()
    if input_text is not None and proc.stdin is not None:
        try:
            proc.stdin.write(input_text)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _terminate_group(proc)
        for thread in threads:
            thread.join(timeout=5)
        raise StepTimeoutError(f"`{shlex.join(args)}` exceeded its {timeout:.0f}s time limit and was killed") from None
    for thread in threads:
        thread.join()
    completed = Completed(args, proc.returncode, "".join(out_lines), "".join(err_lines))
    if check and not completed.ok:
        raise CommandFailed(completed)
    return completed


def _terminate_group(proc: subprocess.Popen[str], grace: float = 5.0) -> None:
    """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return
            time.sleep(0.05)
    proc.wait()


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


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop a process started with ``spawn``: SIGTERM, then SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def interactive(argv: Sequence[str | os.PathLike[str]]) -> int:
    """Run ``argv`` on this terminal (stdin, stdout and stderr inherited) and return its exit status.

    For an interactive shell only: it stays in our process group so the terminal's
    Ctrl-C reaches it, and it is waited for whatever happens.
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
