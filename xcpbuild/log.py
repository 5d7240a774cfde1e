"""Logging: timed, nested steps for the console.

Library code never prints. It logs through ``logging`` and wraps long work in
``step()``; the CLI decides where that goes (stderr, so stdout stays clean for
``--json`` and for output meant for pipes). It runs on Python 3.6 (the export
server ships it to XCP-ng dom0), so no dataclasses or contextvars here.
"""

import contextlib
import logging
import sys
import threading
import time
from typing import Iterator, List, Optional

LOGGER_NAME = "xcpbuild"


class _Depth(threading.local):
    """How deeply nested the current thread's steps are (each thread starts at 0)."""

    value = 0


_depth = _Depth()


def get_logger(name: str = "") -> logging.Logger:
    """The package logger, or a child of it (``get_logger("docker")``)."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


class StepResult:
    """What a finished step reports: its name, duration and outcome."""

    def __init__(self, name: str, seconds: float = 0.0, ok: bool = True, notes: Optional[List[str]] = None) -> None:
        self.name = name
        self.seconds = seconds
        self.ok = ok
        self.notes: List[str] = list(notes or [])

    def __repr__(self) -> str:
        return f"StepResult({self.name!r}, seconds={self.seconds:.3f}, ok={self.ok}, notes={self.notes!r})"


class _IndentFilter(logging.Filter):
    """Prefix messages with the current step depth so nesting shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.indent = "  " * _depth.value
        return True


@contextlib.contextmanager
def step(name: str, logger: Optional[logging.Logger] = None) -> Iterator[StepResult]:
    """Log ``name``, run the body one level deeper, then log its duration and outcome."""
    log = logger or get_logger()
    result = StepResult(name)
    log.info("▶ %s", name)
    outer = _depth.value
    _depth.value = outer + 1
    start = time.monotonic()
    try:
        yield result
    except BaseException:
        result.ok = False
        raise
    finally:
        result.seconds = time.monotonic() - start
        _depth.value = outer
        mark = "✓" if result.ok else "✗"
        log.log(
            logging.INFO if result.ok else logging.ERROR,
            "%s %s (%.1fs)",
            mark,
            name,
            result.seconds,
        )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    A handler holding the stream it was created with breaks when that stream is
    replaced and closed (test capture, daemon redirection), and a log line from a
    late thread then becomes a traceback.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure(verbosity: int = 0, quiet: bool = False) -> None:
    """Send package logs to stderr; ``verbosity`` 1 shows debug lines (commands run)."""
    root = logging.getLogger(LOGGER_NAME)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.addFilter(_IndentFilter())
    handler.setFormatter(logging.Formatter("%(indent)s%(message)s"))
    root.addHandler(handler)
    if quiet:
        root.setLevel(logging.WARNING)
    elif verbosity > 0:
        root.setLevel(logging.DEBUG)
    else:
        root.setLevel(logging.INFO)
    root.propagate = False
