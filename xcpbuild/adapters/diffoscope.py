"""diffoscope (Debian's package), for a readable account of how two builds of one package differ."""

from __future__ import annotations

from pathlib import Path

from xcpbuild.adapters.process import run, which
from xcpbuild.log import get_logger

log = get_logger("diffoscope")


def compare(first: Path, second: Path, timeout: float = 300) -> str | None:
    """diffoscope's text report of ``first`` against ``second``; None when diffoscope is not installed."""
    tool = which("diffoscope")
    if tool is None:
        log.info("diffoscope is not installed: the per-file differences are all there is")
        return None
    done = run([tool, "--text", "-", "--no-progress", first, second], timeout=timeout, check=False)
    # Exit 1 means "they differ", the expected case here.
    return done.stdout if done.returncode in (0, 1) else f"diffoscope failed ({done.returncode}): {done.stderr}"
