"""Static checks run as part of the test suite: import contracts, ruff, strict mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([str(BIN / "lint-imports")], id="import-contracts"),
        pytest.param([str(BIN / "ruff"), "check", "."], id="ruff"),
        pytest.param([sys.executable, "-m", "mypy"], id="mypy-strict"),
    ],
)
def test_static_check_passes(argv: list[str]) -> None:
    done = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
