from __future__ import annotations

import logging

import pytest

from xcpbuild import log


def test_steps_nest_and_report_time(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure()
    with log.step("outer") as outer, log.step("inner"):
        log.get_logger().info("work")
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "▶ outer"
    assert err[1] == "  ▶ inner"
    assert err[2] == "    work"
    assert err[3].startswith("  ✓ inner (")
    assert err[4].startswith("✓ outer (")
    assert outer.ok and outer.seconds >= 0


def test_failed_step_is_marked(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure()
    with pytest.raises(RuntimeError), log.step("doomed"):
        raise RuntimeError("x")
    assert "✗ doomed" in capsys.readouterr().err
    logging.getLogger("xcpbuild").handlers.clear()
