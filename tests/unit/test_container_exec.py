"""BuildContainer.exec's reading of the engine's answer (the engine itself is faked: logic only)."""

from __future__ import annotations

from typing import Any

import pytest

from xcpbuild.adapters import container as ctr
from xcpbuild.errors import ContainerStepError, EngineError


class _Api:
    def __init__(self, inspected: list[dict[str, Any]]) -> None:
        self.inspected = inspected

    def exec_create(self, *_args: object, **_kwargs: object) -> dict[str, str]:
        return {"Id": "exec1"}

    def exec_start(self, *_args: object, **_kwargs: object) -> list[bytes]:
        return [b"line one\nline ", b"two\n"]

    def exec_inspect(self, _exec_id: str) -> dict[str, Any]:
        return self.inspected.pop(0) if len(self.inspected) > 1 else self.inspected[0]


class _Sdk:
    def __init__(self, api: _Api) -> None:
        self.api = api


class _Engine:
    def __init__(self, api: _Api) -> None:
        self.sdk = _Sdk(api)


class _Box:
    id = "c0ffee"


def _box(*inspected: dict[str, Any]) -> ctr.BuildContainer:
    box = ctr.BuildContainer(_Engine(_Api(list(inspected))), ctr.ContainerOptions(image="x"))  # type: ignore[arg-type]
    box._container = _Box()
    return box


def test_exit_code_zero_is_success() -> None:
    result = _box({"Running": False, "ExitCode": 0}).exec(["true"])
    assert result.exit_code == 0
    assert result.output == "line one\nline two"


def test_a_failing_step_raises() -> None:
    with pytest.raises(ContainerStepError, match="status 3"):
        _box({"Running": False, "ExitCode": 3}).exec(["false"])


@pytest.mark.parametrize("inspected", [{"Running": False, "ExitCode": None}, {"Running": False}, {"Running": True}])
def test_an_unreadable_exit_code_is_an_error_not_success(inspected: dict[str, Any]) -> None:
    box = _box(inspected)
    box.exit_code_patience = 0.1
    with pytest.raises(EngineError, match="no exit code"):
        box.exec(["true"], check=False)


def test_a_step_still_reported_running_is_waited_for() -> None:
    box = _box({"Running": True, "ExitCode": None}, {"Running": False, "ExitCode": 0})
    assert box.exec(["true"]).exit_code == 0
