"""Logging: timed, nested steps for the console.

Library code never prints. It logs through ``logging`` and wraps long work in
``step()``; the CLI decides where that goes (stderr, so stdout stays clean for
``--json`` and for output meant for pipes).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

LOGGER_NAME = "xcpbuild"

_depth: contextvars.ContextVar[int] = contextvars.ContextVar("xcpbuild_step_depth", default=0)


def get_logger(name: str = "") -> logging.Logger:
    """The package logger, or a child of it (``get_logger("docker")``)."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


@dataclass
class StepResult:
    """What a finished step reports: its name, duration and outcome."""

    name: str
    seconds: float = 0.0
    ok: bool = True
    notes: list[str] = field(default_factory=list)


class _IndentFilter(logging.Filter):
    """Prefix messages with the current step depth so nesting shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.indent = "  " * _depth.get()
        return True


@contextlib.contextmanager
def step(name: str, logger: logging.Logger | None = None) -> Iterator[StepResult]:
    """Log ``name``, run the body one level deeper, then log its duration and outcome."""
    log = logger or get_logger()
    result = StepResult(name)
    log.info("▶ %s", name)
    token = _depth.set(_depth.get() + 1)
    start = time.monotonic()
    try:
        yield result
    except BaseException:
        result.ok = False
        raise
    finally:
        result.seconds = time.monotonic() - start
        _depth.reset(token)
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
