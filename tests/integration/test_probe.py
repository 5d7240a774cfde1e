"""The patch probe, end to end, on a fixture upstream of our own and (opt-in) on the real vhd-tool.

The fixture ``copyd`` has vhd-tool 0.20.0's shape: a copy loop that sleeps and
retries 20 x 0.1 s on EAGAIN. Unpatched it must be reported failed under a 5 s
stall; with the fixture patch (wait for writability) it must survive. The
probe image (local base + OCaml) is built once and cached by content hash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need, need_tool
from tests.fixtures.probe_upstream import ProbeFixture, make_probe_fixture, make_probe_pkgrepo
from xcpbuild.adapters.engine import Engine
from xcpbuild.cli.app import main
from xcpbuild.config import Settings, load_settings
from xcpbuild.errors import BuildError, UsageError, VerifyError
from xcpbuild.pipeline.verify import probe

pytestmark = pytest.mark.slow


def _settings(fixture: ProbeFixture, work: Path) -> Settings:
    # The shared cache keeps the bootstrapped base and git mirrors between runs and tests.
    return Settings(project_root=fixture.project, cache_dir=load_settings().cache_dir, work_dir=work)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, docker_client) -> ProbeFixture:  # type: ignore[no-untyped-def]
    need_tool("git", "mmdebstrap")
    return make_probe_fixture(tmp_path_factory.mktemp("probe-good"))


def test_unpatched_fixture_is_reported_failed_under_a_stall(good: ProbeFixture, tmp_path: Path) -> None:
    report = probe.probe(_settings(good, tmp_path), "copyd", apply_patches=False, stall=5)

    assert report.verdict == "failed"
    assert report.patches == []
    by_name = {run.name: run for run in report.runs}
    # Reading at full speed and throttled works even with the sleep loop; the stall is what kills it.
    assert by_name["raw"].ok and by_name["throttle"].ok
    assert not by_name["stall"].ok
    assert by_name["stall"].bytes < report.file_bytes
    assert 'Unix.Unix_error(Unix.EAGAIN, "single_write", "")' in report.driver_stderr
    assert report.driver_exit == 2
    assert (Path(report.work_dir) / "report.json").is_file()


def test_patched_fixture_survives_the_stall_byte_exact(good: ProbeFixture, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XCPBUILD_PROJECT", str(good.project))
    monkeypatch.setenv("XCPBUILD_WORK", str(tmp_path))
    monkeypatch.setenv("XCPBUILD_CACHE", str(load_settings().cache_dir))
    out = subprocess.run(
        [sys.executable, "-m", "xcpbuild", "probe", "copyd", "--stall", "6", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["verdict"] == "survived"
    assert report["patches"] == [good.patch.name]
    assert [run["name"] for run in report["runs"]] == ["raw", "throttle", "stall"]
    for run in report["runs"]:
        assert run["ok"], run
        assert run["bytes"] == report["file_bytes"]
        assert run["sha256"] == report["expected_sha256"]
    assert report["runs"][2]["seconds"] >= 6
    assert report["driver_exit"] == 0


def test_a_probe_that_does_not_compile_is_reported_with_the_compiler_message(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: Engine,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need_tool("git", "mmdebstrap")
    broken = make_probe_fixture(tmp_path_factory.mktemp("probe-broken"), broken=True)
    work = tmp_path_factory.mktemp("probe-broken-work")
    with pytest.raises(BuildError) as caught:
        probe.probe(_settings(broken, work), "copyd")
    assert "upstream src/copy.ml line 9" in caught.value.message
    assert "Unbound value Unix.wait_writable" in caught.value.message
    assert "compile.log" in caught.value.hint

    # Through the CLI: one line and a hint, exit 10, no traceback.
    monkeypatch.setenv("XCPBUILD_PROJECT", str(broken.project))
    monkeypatch.setenv("XCPBUILD_WORK", str(work))
    monkeypatch.setenv("XCPBUILD_CACHE", str(load_settings().cache_dir))
    capsys.readouterr()
    assert main(["probe", "copyd"]) == BuildError.exit_code
    err = capsys.readouterr().err
    assert "Unbound value Unix.wait_writable" in err
    assert "copy.ml" in err
    assert "Traceback" not in err


def _cli(fixture: ProbeFixture, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XCPBUILD_PROJECT": str(fixture.project),
        "XCPBUILD_WORK": str(work),
        "XCPBUILD_CACHE": str(load_settings().cache_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "xcpbuild", "probe", *args], capture_output=True, text=True, check=False, env=env
    )


def test_a_package_repository_is_probed_on_its_specs_upstream_with_its_own_patch_lines(
    good: ProbeFixture, tmp_path: Path
) -> None:
    need_tool("rpmspec")
    repo = make_probe_pkgrepo(tmp_path / "copyd-rpm", good)
    commit = subprocess.run(
        ["git", "rev-parse", "v1.0.0^{commit}"], cwd=good.upstream, capture_output=True, text=True, check=True
    ).stdout.strip()

    # Without the define, the spec's %if drops Patch1000: upstream as it is, which the stall kills.
    bare = _cli(good, tmp_path / "w1", str(repo), "--stall", "5")
    assert bare.returncode == VerifyError.exit_code, bare.stderr
    assert "the probe of copyd failed" in bare.stderr
    assert 'Unix.Unix_error(Unix.EAGAIN, "single_write", "")' in bare.stderr
    assert "no patches for this target and these --define(s)" in bare.stdout

    # With it, the spec's own PatchNNNN line is applied to the commit `Provides: gitsha(...)` names.
    fixed = _cli(good, tmp_path / "w2", str(repo), "--define", "with_fix 1", "--stall", "5", "--json")
    assert fixed.returncode == 0, fixed.stderr
    report = json.loads(fixed.stdout)
    assert report["package"] == "copyd"
    assert report["verdict"] == "survived"
    assert report["patches"] == [good.patch.name]
    assert report["upstream"] == f"file://{good.upstream}"
    assert report["commit"] == commit
    assert all(run["ok"] and run["sha256"] == report["expected_sha256"] for run in report["runs"])


def test_a_package_repository_without_a_recipe_is_one_line_and_a_hint(
    good: ProbeFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    need_tool("rpmspec")
    repo = make_probe_pkgrepo(tmp_path / "fork", good)
    spec = repo / "SPECS" / "copyd.spec"
    spec.write_text(spec.read_text().replace("Name: copyd", "Name: copyd-fork"))
    monkeypatch.setenv("XCPBUILD_PROJECT", str(good.project))
    monkeypatch.setenv("XCPBUILD_WORK", str(tmp_path / "work"))
    assert main(["probe", str(repo)]) == UsageError.exit_code
    err = capsys.readouterr().err
    assert "no probe recipe for copyd-fork: there is no specs/copyd-fork.toml" in err
    assert "--recipe NAME" in err
    assert not (tmp_path / "work" / "probe").exists()  # refused before anything was fetched


VHD_TOOL = os.environ.get("XCPBUILD_VHD_TOOL_UPSTREAM")


@pytest.mark.optin
@pytest.mark.skipif(not VHD_TOOL, reason="set XCPBUILD_VHD_TOOL_UPSTREAM to a vhd-tool clone to probe the real code")
def test_real_vhd_tool_fails_unpatched_and_survives_with_our_series(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    need(VHD_TOOL is not None, "a vhd-tool clone")
    base = load_settings()
    settings = Settings(project_root=base.project_root, cache_dir=base.cache_dir, work_dir=tmp_path)

    unpatched = probe.probe(settings, "vhd-tool", upstream=VHD_TOOL, ref="v0.20.0", apply_patches=False, stall=5)
    assert unpatched.verdict == "failed"
    assert 'Unix.Unix_error(Unix.EAGAIN, "sendfile", "")' in unpatched.driver_stderr

    patched = probe.probe(settings, "vhd-tool", upstream=VHD_TOOL, ref="v0.20.0", stall=30)
    assert patched.verdict == "survived", patched.reason
    assert patched.patches
    stall_run = next(run for run in patched.runs if run.name == "stall")
    assert stall_run.ok and stall_run.sha256 == patched.expected_sha256 and stall_run.seconds >= 30
