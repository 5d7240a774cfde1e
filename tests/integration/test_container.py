"""The build container adapter against a real engine: isolation, copies, cleanup on every path."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from xcpbuild.adapters import container as ctr
from xcpbuild.adapters.engine import Engine
from xcpbuild.errors import ContainerStepError, StepTimeoutError

WORK = PurePosixPath("/work")


def _opts(image: str, **kw: object) -> ctr.ContainerOptions:
    return ctr.ContainerOptions(image=image, workdir=WORK, role="test", **kw)  # type: ignore[arg-type]


def test_runs_isolated_and_non_root_copies_in_and_out_then_is_gone(
    docker_client: Engine, tiny_image: str, tmp_path: Path
) -> None:
    source = tmp_path / "input.txt"
    source.write_text("hello from the host\n")
    lines: list[str] = []
    with ctr.BuildContainer(docker_client, _opts(tiny_image)) as box:
        name = box.name
        assert ctr.container_exists(docker_client, name)
        assert box.exec(["id", "-u"]).output.strip() == "1000"
        # network none: only the loopback interface exists
        assert box.exec(["ls", "/sys/class/net"]).output.split() == ["lo"]
        box.put([source], WORK / "in")
        box.exec(
            ["sh", "-c", "cat /work/in/input.txt; sha256sum /work/in/input.txt > /work/out.sha"], on_line=lines.append
        )
        got = box.get(WORK / "out.sha", tmp_path / "out")
    assert lines == ["hello from the host"]
    assert (tmp_path / "out" / "out.sha").read_text().split()[0] == __import__("hashlib").sha256(
        source.read_bytes()
    ).hexdigest()
    assert got == [tmp_path / "out" / "out.sha"]
    assert not ctr.container_exists(docker_client, name)


def test_failing_step_raises_and_container_is_removed(docker_client, tiny_image: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContainerStepError) as info, ctr.BuildContainer(docker_client, _opts(tiny_image)) as box:
        name = box.name
        box.exec(["sh", "-c", "echo compiling; echo it broke >&2; exit 4"])
    assert "status 4" in info.value.message and "it broke" in info.value.message
    assert not ctr.container_exists(docker_client, name)


def test_timeout_kills_the_step_and_removes_the_container(docker_client, tiny_image: str) -> None:  # type: ignore[no-untyped-def]
    import time

    start = time.monotonic()
    with pytest.raises(StepTimeoutError) as info, ctr.BuildContainer(docker_client, _opts(tiny_image)) as box:
        name = box.name
        box.exec(["sleep", "300"], timeout=2)
    assert time.monotonic() - start < 60
    assert "time limit" in info.value.message
    assert not ctr.container_exists(docker_client, name)


def test_keep_leaves_the_container_for_inspection(docker_client, tiny_image: str) -> None:  # type: ignore[no-untyped-def]
    with ctr.BuildContainer(docker_client, _opts(tiny_image, keep=True)) as box:
        name = box.name
    try:
        assert ctr.container_exists(docker_client, name)
    finally:
        docker_client.sdk.containers.get(name).remove(force=True)


def test_missing_image_is_a_clear_error(docker_client) -> None:  # type: ignore[no-untyped-def]
    from xcpbuild.errors import EngineError

    with pytest.raises(EngineError) as info, ctr.BuildContainer(docker_client, _opts("xcpbuild-no-such-image:0")):
        pass
    assert "image build" in info.value.hint


def test_glob_lists_matching_entries_without_a_shell(docker_client, tiny_image: str) -> None:  # type: ignore[no-untyped-def]
    with ctr.BuildContainer(docker_client, _opts(tiny_image)) as box:
        box.put_bytes({"a.src.rpm": b"1", "b.src.rpm": b"2", "c.txt": b"3", "d e.src.rpm": b"4"}, WORK / "out")
        assert box.glob(WORK / "out", "*.src.rpm") == [
            WORK / "out" / n for n in ("a.src.rpm", "b.src.rpm", "d e.src.rpm")
        ]
        assert box.glob(WORK / "out", "*.nothing") == []
        with pytest.raises(ContainerStepError, match="cannot list"):
            box.glob(WORK / "missing", "*")
