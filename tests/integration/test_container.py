"""The build container adapter against a real engine: isolation, copies, cleanup on every path."""

from __future__ import annotations

import threading
import time
import uuid
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


# -- stopping an image build another thread waits on ---------------------------------------------
def _marked_containers(client: Engine, marker: str) -> list[str]:
    """Containers whose command holds ``marker`` (a string this test put in its own Dockerfile)."""
    # The engine's list as it is (no inspect per container: other jobs' containers come and go meanwhile).
    return [str(box["Id"]) for box in client.sdk.api.containers(all=True) if marker in str(box.get("Command", ""))]


def _slow_context(tmp_path: Path, image: str, marker: str) -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {image}\nRUN sleep 600 && echo {marker}\n")
    return context


def _build_in_thread(
    client: Engine, context: Path, tag: str, stop: ctr.ImageBuildStop
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def build() -> None:
        try:
            ctr.build_image(client, context, tag, stop=stop)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    return thread, errors


def _is_podman(client: Engine) -> bool:
    return any("podman" in str(c.get("Name", "")).lower() for c in client.sdk.version().get("Components", []))


def test_a_stopped_image_build_ends_at_once_and_leaves_no_step_container(
    docker_client: Engine, tiny_image: str, tmp_path: Path
) -> None:
    if _is_podman(docker_client):
        pytest.skip("Podman's builder runs RUN steps outside the Docker API's containers: a running step cannot be cut")
    marker = f"stop-me-{uuid.uuid4().hex}"
    tag = f"xcpbuild-test-stopped:{marker[-12:]}"
    stop = ctr.ImageBuildStop()
    thread, errors = _build_in_thread(docker_client, _slow_context(tmp_path, tiny_image, marker), tag, stop)
    try:
        deadline = time.monotonic() + 120
        while not _marked_containers(docker_client, marker):
            assert thread.is_alive() and time.monotonic() < deadline, errors or "the RUN step never started"
            time.sleep(0.2)
        started = time.monotonic()
        stop.stop()
        thread.join(60)
        assert not thread.is_alive(), "the build went on after stop()"
        assert time.monotonic() - started < 30
    finally:
        stop.stop()
        thread.join(60)
    assert len(errors) == 1 and isinstance(errors[0], ContainerStepError), errors
    assert "was stopped" in errors[0].message
    assert ctr.image_id(docker_client, tag) is None
    deadline = time.monotonic() + 30  # the engine removes the killed step's container as the build ends
    while _marked_containers(docker_client, marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _marked_containers(docker_client, marker) == []


def test_an_image_build_stopped_before_its_step_starts_never_runs_it(
    docker_client: Engine, tiny_image: str, tmp_path: Path
) -> None:
    marker = f"stop-me-{uuid.uuid4().hex}"
    tag = f"xcpbuild-test-stopped:{marker[-12:]}"
    stop = ctr.ImageBuildStop()
    stop.stop()
    started = time.monotonic()
    thread, errors = _build_in_thread(docker_client, _slow_context(tmp_path, tiny_image, marker), tag, stop)
    thread.join(60)
    assert not thread.is_alive() and time.monotonic() - started < 30
    assert len(errors) == 1 and "was stopped" in str(errors[0]), errors
    assert ctr.image_id(docker_client, tag) is None
