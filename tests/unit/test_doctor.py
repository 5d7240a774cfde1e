"""`xcpbuild doctor` with DOCKER_HOST pointing at nothing: it fails with a hint (no engine needed)."""

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


def test_doctor_without_engine_fails_with_a_hint(tmp_path: Path) -> None:
    sock = tmp_path / "nothing.sock"
    done = _doctor({"DOCKER_HOST": f"unix://{sock}"}, tmp_path)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    engine = next(c for c in report["checks"] if c["name"] == "docker engine")
    assert not engine["ok"]
    assert str(sock) in engine["detail"]
    assert "DOCKER_HOST" in engine["hint"]
    # the human table says the same in one place
    table = subprocess.run(
        [sys.executable, "-m", "xcpbuild", "doctor"],
        capture_output=True,
        text=True,
        env=dict(os.environ, DOCKER_HOST=f"unix://{sock}", XCPBUILD_WORK=str(tmp_path)),
        cwd=PROJECT_ROOT,
    )
    assert "MISSING" in table.stdout and "hint for docker engine" in table.stdout
