"""Nothing left behind: SIGTERM, SIGINT and SIGKILL to real `xcpbuild` commands, then what remains.

Each test looks only at what its own CLI process owned (containers labelled with that
process as owner, directories named after it): other jobs share the engine and the cache.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker.errors
import pytest

from tests.conftest import PROJECT_ROOT, need_tool
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.fixtures.rpms import make_rpm
from tests.fixtures.vhd_tool_standin import make_standin
from tests.integration.test_build import SLOW_SPEC
from xcpbuild.adapters import container as ctr
from xcpbuild.adapters import owned
from xcpbuild.adapters.engine import Engine
from xcpbuild.config import Settings

SLOW_TOML = (
    'name = "slow"\nsummary = "sleeps"\nlicense = "MIT"\nurl = "https://example.invalid"\n'
    'source_kind = "project"\nproject_paths = ["xcpbuild/__init__.py"]\ntemplate = "slow.spec.j2"\n'
    '[targets.default]\nversion = "1"\nref = "project"\n'
)


def _start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "xcpbuild", "-q", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _owner(proc: subprocess.Popen[str]) -> owned.Owner:
    start = owned.start_of(proc.pid)
    assert start is not None, "the CLI is already gone"
    return owned.Owner(owned.this_host(), proc.pid, start)


def _containers_of(client: Engine, owner: owned.Owner) -> list[str]:
    boxes = client.sdk.containers.list(all=True, filters={"label": f"{ctr.OWNER_LABEL}={owner.label}"})
    return [str(box.name) for box in boxes]


def _dirs_of(owner: owned.Owner, *places: Path) -> list[Path]:
    """Directories in ``places`` whose name says ``owner`` made them."""
    found: list[Path] = []
    for place in places:
        if place.is_dir():
            found += [p for p in place.iterdir() if owned.owner_of(p) is not None and f".{owner.token}." in p.name]
    return found


def _wait(what: str, condition, seconds: float, proc: subprocess.Popen[str]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the CLI exited ({proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds:.0f}s")
        time.sleep(0.2)


def _slow_project(project: Settings) -> dict[str, str]:
    (project.specs_dir / "slow.toml").write_text(SLOW_TOML)
    (project.specs_dir / "slow.spec.j2").write_text(SLOW_SPEC)
    return {"XCPBUILD_PROJECT": str(project.project_root), "XCPBUILD_WORK": str(project.work_dir)}


def _in_the_slow_step(client: Engine, owner: owned.Owner) -> bool:
    running = client.sdk.containers.list(filters={"label": f"{ctr.OWNER_LABEL}={owner.label}", "status": "running"})
    for box in running:
        try:
            top = box.top()
        except docker.errors.APIError:  # it ended between the listing and the look inside (an earlier step's)
            continue
        if any("sleep 600" in " ".join(p) for p in top.get("Processes") or []):
            return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_build_leaves_no_container_and_no_staging(
    docker_client: Engine,
    project: Settings,
    sig: signal.Signals,
) -> None:
    env = _slow_project(project)
    proc = _start_cli(["build", "slow", "--target", "local"], env)
    try:
        owner = _owner(proc)
        _wait("the build's %prep reaching its sleep", lambda: _in_the_slow_step(docker_client, owner), 180, proc)
        assert _dirs_of(owner, project.work_dir / "builds"), "the build has no staging directory to clean up"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert _containers_of(docker_client, owner) == []
    assert _dirs_of(owner, project.work_dir / "builds", owned.root()) == []


def test_a_sigkilled_builds_container_and_staging_are_swept_by_the_next_run(
    docker_client: Engine,
    project: Settings,
) -> None:
    env = _slow_project(project)
    proc = _start_cli(["build", "slow", "--target", "local"], env)
    try:
        owner = _owner(proc)
        _wait("the build's %prep reaching its sleep", lambda: _in_the_slow_step(docker_client, owner), 180, proc)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    left = _containers_of(docker_client, owner)
    staging = _dirs_of(owner, project.work_dir / "builds")
    assert left and staging, "a SIGKILL should leave the container and the staging (nothing can clean up)"
    try:
        nxt = subprocess.run(
            [sys.executable, "-m", "xcpbuild", "build", "xcp-export-server", "--target", "local"],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert nxt.returncode == 0, nxt.stderr
        assert _containers_of(docker_client, owner) == [], "the next run left the dead run's container"
        assert not any(p.exists() for p in staging), "the next run left the dead run's staging"
    finally:
        for name in _containers_of(docker_client, owner):
            docker_client.sdk.containers.get(name).remove(force=True)


# -- a host child: the dnf check of a publish ---------------------------------------------------
# Stands in for dnf's Python long enough to be interrupted (the real check answers in seconds):
# the dnf check runs its helper under the interpreter dnf's first line names.
SLOW_PYTHON = """#!/bin/sh
sleep 300 &
echo $$ $! > "$XCPBUILD_TEST_DNF_PIDS"
wait
"""


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    need_tool("rpmbuild", "rpmsign", "rpmkeys", "gpg", "dnf")
    made = make_key(tmp_path_factory.mktemp("key"))
    yield made
    stop_agent(made)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_publish_leaves_no_dnf_and_no_temporary_directory(
    tmp_path: Path, key: GpgTestKey, sig: signal.Signals
) -> None:
    rpm = make_rpm(tmp_path / "rpms", "hello", "1.0", "1")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "slow-python").write_text(SLOW_PYTHON)
    (bin_dir / "dnf").write_text(f"#!{bin_dir / 'slow-python'}\n")
    for name in ("slow-python", "dnf"):
        (bin_dir / name).chmod(0o755)
    pids = tmp_path / "dnf.pids"
    root = tmp_path / "repo"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "XCPBUILD_TEST_DNF_PIDS": str(pids)}
    args = ["publish", str(rpm), "--repo", str(root), "--release", "8.3", "--channel", "testing"]
    proc = _start_cli([*args, "--sign-key", key.fingerprint, "--gnupg-home", str(key.home)], env)
    try:
        owner = _owner(proc)
        _wait("the dnf check starting", lambda: pids.exists() and len(pids.read_text().split()) == 2, 120, proc)
        assert _dirs_of(owner, owned.root()), "the publish has no temporary directory to clean up"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    shell, sleeper = (int(p) for p in pids.read_text().split())
    assert not _alive(shell) and not _alive(sleeper), "the publish's child outlived it"
    assert _dirs_of(owner, owned.root()) == []
    binary = root / "8" / "8.3" / "testing" / "x86_64"
    assert not list(binary.glob(".staging*")), "the repository's staging was left"
    assert not (binary / "repodata").exists(), "an interrupted first publish must not go live"


# -- gpg-agents of temporary keyrings --------------------------------------------------------
def _agents_under(tree: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        serves_tree = str(tree).encode() in b" ".join(argv)
        if argv[0].endswith(b"gpg-agent") and serves_tree and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_the_dnf_check_stops_the_gpg_agent_of_its_staged_keyring(
    tmp_path: Path, key: GpgTestKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xcpbuild.pipeline.publish import publish

    rpm = make_rpm(tmp_path / "rpms", "hello", "1.0", "1")
    monkeypatch.setattr(owned._run, "root", tmp_path / "tmp")
    with publish.signing_key(key.fingerprint, key.home) as signing:
        publish.publish([rpm], tmp_path / "repo", "8.3", "testing", key=signing)
    assert _agents_under(tmp_path / "tmp") == [], "a gpg-agent of a temporary keyring outlived the publish"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_dead_runs_keyring_agent_is_stopped_when_its_directory_is_swept(tmp_path: Path) -> None:
    need_tool("gpg", "gpgconf", "gpg-connect-agent")
    child = subprocess.Popen(["sleep", "30"])
    start = owned.start_of(child.pid)
    child.kill()
    child.wait()
    leftover = tmp_path / f"dnf.{child.pid}-{start}.0"
    home = leftover / "k"  # short: the agent's socket path must fit in 108 bytes
    home.mkdir(parents=True, mode=0o700)
    subprocess.run(["gpg-connect-agent", "--homedir", str(home), "/bye"], check=True, capture_output=True)
    assert _agents_under(home), "could not start an agent to leave behind"
    try:
        assert owned.sweep(tmp_path) == [leftover]
        assert not leftover.exists()
        deadline = time.monotonic() + 10
        while _agents_under(home) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _agents_under(home) == [], "the swept keyring's agent is still running"
    finally:
        for pid in _agents_under(home):
            os.kill(pid, signal.SIGTERM)


# -- the release: the probe image built beside the build step ------------------------------------
def _marked(client: Engine, marker: str) -> list[str]:
    """Containers whose command holds ``marker`` (put in this test's own probe Dockerfile)."""
    # The engine's list as it is (no inspect per container: other jobs' containers come and go meanwhile).
    return [str(box["Id"]) for box in client.sdk.api.containers(all=True) if marker in str(box.get("Command", ""))]


def test_ctrl_c_in_the_build_step_stops_the_probe_image_built_beside_it(
    docker_client: Engine, project: Settings, tmp_path: Path
) -> None:
    need_tool("git", "rpmbuild")
    standin = make_standin(tmp_path / "standin")
    env = _slow_project(Settings(project_root=standin.project, cache_dir=project.cache_dir, work_dir=project.work_dir))
    marker = f"probe-image-{uuid.uuid4().hex}"
    # A probe image whose build would take ten minutes: only stopping it ends it sooner.
    (standin.project / "containers" / "probe-ocaml" / "Dockerfile").write_text(
        f"ARG BASE\nFROM ${{BASE}}\nRUN sleep 600 && echo {marker}\n"
    )
    plan = tmp_path / "plan.toml"
    plan.write_text(
        'target = "local"\nrelease = "8.3"\nchannel = "testing"\n'
        '[[packages]]\nname = "slow"\nstage = "rpm"\n'
        '[[packages]]\nname = "vhd-tool"\nstage = "srpm"\nverify = "probe"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "xcpbuild", "-q", "release", "--plan", str(plan), "--upstream",
         f"vhd-tool={standin.upstream}"],
        cwd=standin.project, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        owner = _owner(proc)
        _wait("the probe image's RUN step", lambda: bool(_marked(docker_client, marker)), 300, proc)
        _wait("the build's %prep reaching its sleep", lambda: _in_the_slow_step(docker_client, owner), 180, proc)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for box in _marked(docker_client, marker):
            docker_client.sdk.containers.get(box).remove(force=True)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert took < 60, f"the run took {took:.0f} s to stop"
    assert _containers_of(docker_client, owner) == []
    deadline = time.monotonic() + 30  # the engine removes the killed RUN step's container as the build ends
    while _marked(docker_client, marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _marked(docker_client, marker) == [], "the probe image's build outlived the run"
