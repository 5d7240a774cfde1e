"""Unit tests run with no container engine: any attempt to reach one fails loudly."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("unit tests must not talk to a Docker engine; move this test to tests/integration")

    monkeypatch.setattr(docker, "from_env", refuse)
    monkeypatch.setattr(docker, "DockerClient", refuse)
