"""`xcpbuild doctor` with the engine (without one: tests/unit/test_doctor.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.test_doctor import _doctor


def test_doctor_with_engine_reports_it(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = _doctor({}, tmp_path)
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["docker engine"]["ok"], checks["docker engine"]
    assert "API" in checks["docker engine"]["detail"]
    assert done.returncode == (0 if report["ok"] else 1)
