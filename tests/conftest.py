"""Shared test plumbing.

Tests under tests/integration are marked ``integration`` automatically. They need
real tools (Docker engine, rpmbuild, dnf, gpg, qemu-img). Without one they skip,
unless XCPBUILD_REQUIRE_TOOLS=1 (set by .ci/run) turns that skip into a failure,
so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REQUIRE_TOOLS = os.environ.get("XCPBUILD_REQUIRE_TOOLS") == "1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


def need(condition: bool, what: str) -> None:
    """Skip (locally) or fail (in CI) when a required real component is absent."""
    if condition:
        return
    message = f"{what} is not available"
    if REQUIRE_TOOLS:
        pytest.fail(f"{message}, and XCPBUILD_REQUIRE_TOOLS=1 forbids skipping", pytrace=False)
    pytest.skip(message)


def need_tool(*tools: str) -> None:
    for tool in tools:
        need(shutil.which(tool) is not None or Path("/usr/sbin", tool).exists(), f"`{tool}`")


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    """A live Docker client, or skip/fail as ``need`` decides."""
    from xcpbuild.adapters import engine
    from xcpbuild.errors import EngineError

    try:
        client = engine.client(timeout=600)
    except EngineError as exc:
        need(False, f"a Docker engine ({exc.message})")
        raise
    return client
