"""`xcpbuild doctor` with the engine (without one: tests/unit/test_doctor.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT


def _doctor(env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XCPBUILD_WORK=str(tmp_path), **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "xcpbuild", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=120,
    )


def test_doctor_with_engine_reports_it(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = _doctor({}, tmp_path)
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["docker engine"]["ok"], checks["docker engine"]
    assert "API" in checks["docker engine"]["detail"]
    assert done.returncode == (0 if report["ok"] else 1)
