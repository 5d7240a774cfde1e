"""The main job's logic around vhd-tool: upstream choice, left-out reasons, probe verdicts, proof lines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError, SourceError
from xcpbuild.model.package import PackageDef, find_package
from xcpbuild.model.plan import PlannedPackage, load_plan
from xcpbuild.model.probe import parse_probe
from xcpbuild.pipeline.release import upstreams
from xcpbuild.pipeline.sources.package import resolve
from xcpbuild.pipeline.verify import exportserver_check, probe, probe_check

EAGAIN = 'Unix.Unix_error(Unix.EAGAIN, "sendfile", "")'
SIZE = 64 << 20


def _vhd_tool() -> tuple[PlannedPackage, PackageDef]:
    plan = load_plan(None)
    planned = next(p for p in plan.packages if p.name == "vhd-tool")
    return planned, find_package(PROJECT_ROOT / "specs", "vhd-tool")


def test_upstream_is_the_command_line_then_the_plan_then_the_definition() -> None:
    planned, pkg = _vhd_tool()
    assert upstreams.upstream_for(planned, pkg, {"vhd-tool": "/src/vhd-tool"}) == "/src/vhd-tool"
    assert upstreams.upstream_for(planned, pkg, {}) == "https://github.com/xapi-project/vhd-tool.git"
    assert upstreams.upstream_for(replace(planned, upstream=None), pkg, {}) == pkg.upstream


def test_the_plan_ref_must_be_the_pin() -> None:
    planned, pkg = _vhd_tool()
    upstreams.check_plan_ref(planned, pkg, "local")
    with pytest.raises(ConfigError, match=r"pins v0\.43\.0"):
        upstreams.check_plan_ref(planned, pkg, "xcp-ng-8.2")


def test_an_unreachable_upstream_is_left_out_in_one_line_with_the_hint(tmp_path: Path) -> None:
    planned, _ = _vhd_tool()
    settings = Settings(project_root=PROJECT_ROOT, cache_dir=tmp_path / "cache", work_dir=tmp_path / "work")
    missing = f"file://{tmp_path}/nowhere/vhd-tool.git"  # git fails on it without any traffic
    resolved = {"vhd-tool": resolve(settings, "vhd-tool", "local")}
    found = upstreams.sources(settings, [replace(planned, upstream=missing)], resolved, {})
    reason = found.left_out["vhd-tool"]
    assert "\n" not in reason and missing in reason and "--upstream vhd-tool=PATH_OR_URL" in reason
    assert found.rows == [] and found.upstreams == {}
    with pytest.raises(SourceError):  # given on the command line, it has to work
        upstreams.sources(settings, [planned], resolved, {"vhd-tool": missing})
    with pytest.raises(SourceError):  # and a plan that does not allow leaving out stops too
        upstreams.sources(settings, [replace(planned, upstream=missing, if_unreachable="fail")], resolved, {})


def _report(*, patched: bool, survived: bool, stderr: str = "", stall_bytes: int = SIZE) -> probe.ProbeReport:
    run = probe.RunResult(name="stall", stall=10.0, ok=survived, bytes=stall_bytes)
    return probe.ProbeReport(
        package="vhd-tool",
        upstream="u",
        ref="v0.20.0",
        commit="c" * 40,
        patched=patched,
        patches=["fix.patch"] if patched else [],
        image="i",
        stall=10.0,
        file_bytes=SIZE,
        expected_sha256="0" * 64,
        verdict="survived" if survived else "failed",
        reason="" if survived else "stall: closed",
        runs=[run],
        driver_stderr=stderr,
    )


def test_both_probes_must_go_their_way_for_the_proof() -> None:
    bare = _report(patched=False, survived=False, stderr=f"Fatal error: exception {EAGAIN}\n", stall_bytes=123)
    fixed = _report(patched=True, survived=True)
    result = probe_check.ProbeCheckResult("vhd-tool", "v0.20.0", stall=10.0, expected_error=EAGAIN)
    result.sides = [probe_check.judge(bare, EAGAIN), probe_check.judge(fixed, EAGAIN)]
    assert result.ok
    line = probe_check.proof_line(result)
    assert line.startswith("v0.20.0 unpatched failed a 10 s stall after 123/67108864 bytes with Fatal error: exception")
    assert EAGAIN in line and "with 1 patch(es) it survived byte-exact (67108864/67108864 bytes" in line

    # The stall did not show the bug: an unpatched survivor proves nothing.
    side = probe_check.judge(_report(patched=False, survived=True), EAGAIN)
    assert not side.passed and "survived the stall too" in side.reason
    # Failing for another reason is not the bug either.
    other = probe_check.judge(_report(patched=False, survived=False, stderr="Segmentation fault\n"), EAGAIN)
    assert not other.passed and "Segmentation fault" in other.reason
    # And the patched code must survive.
    broken = probe_check.judge(_report(patched=True, survived=False, stderr=EAGAIN), EAGAIN)
    assert not broken.passed and "with the series it failed" in broken.reason
    result.sides[1] = broken
    result.problem = broken.reason
    assert not result.ok and probe_check.proof_line(result).startswith("not proven: ")


def test_error_line_picks_the_expected_error() -> None:
    assert probe_check.error_line("noise\ndriver: " + EAGAIN + "\nlast\n", EAGAIN) == "driver: " + EAGAIN
    assert probe_check.error_line("a\nb\n", EAGAIN) == "b" and probe_check.error_line("", EAGAIN) == ""


def test_the_probe_recipe_says_how_the_unpatched_code_fails() -> None:
    pkg = find_package(PROJECT_ROOT / "specs", "vhd-tool")
    assert parse_probe(pkg.probe, "vhd-tool.toml").unpatched_error == EAGAIN
    with pytest.raises(ConfigError, match="unpatched_error"):
        parse_probe({**pkg.probe, "unpatched_error": 3}, "vhd-tool.toml")
    assert pkg.pin("local").health_refs == ("v0.27.0", "v0.40.0", "v0.43.0")
    assert pkg.pin("xcp-ng-8.2").health_refs == ()


def test_export_server_proof_line() -> None:
    Trial = exportserver_check.Trial
    trials = [
        Trial("wait", "raw", "survive", "complete", True, 100, 100, True, ""),
        Trial("wait", "vhd", "survive", "complete", True, 100, 100, True, ""),
        Trial("legacy-retry", "raw", "fail", "truncated", None, 40, 100, True, ""),
        Trial("legacy-retry", "vhd", "fail", "truncated", None, 40, 100, True, ""),
    ]
    result = exportserver_check.ExportCheckResult(trials=trials)
    line = exportserver_check.proof_line(result, 10.0)
    assert "wait survived a 10 s stall byte-exact (raw complete 100/100, vhd complete 100/100)" in line
    assert "legacy-retry failed as in 2018 (raw truncated 40/100, vhd truncated 40/100)" in line
    result.problem = "raw export with --eagain-policy legacy-retry was expected to fail"
    assert exportserver_check.proof_line(result, 10.0).startswith("not proven: raw export")


def test_the_batch_verifier_downloads_every_url_at_once_with_its_stall(tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    disk.write_bytes(bytes(range(256)) * 4096)
    argv = [sys.executable, "-m", "xcpbuild.exportserver", "--disk", f"d={disk}", "--token", "t", "--port", "0"]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip().removeprefix("listening on ")
        assert base.startswith("http://127.0.0.1:")
        urls = [f"{base}/export_raw_vdi?vdi=d&format={fmt}" for fmt in ("raw", "vhd")]
        done = subprocess.run(
            [sys.executable, "-m", "xcpbuild.verifier", *urls, "--stall", "0.2@0.5", "--expect-disk", str(disk)],
            capture_output=True,
            text=True,
            env={"XCPBUILD_EXPORT_TOKEN": "t", "PATH": "/usr/bin:/bin"},
            cwd=PROJECT_ROOT,
            check=True,
            timeout=60,
        )
        reports = json.loads(done.stdout)
        assert [r["format"] for r in reports] == ["raw", "vhd"]
        assert all(r["outcome"] == "complete" and r["match"] is True for r in reports)
        assert any("stall" in event for event in reports[0]["events"])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def test_probe_runs_are_checked() -> None:
    with pytest.raises(ConfigError, match="each once"):
        probe.probe(
            Settings(PROJECT_ROOT, Path("/nonexistent"), Path("/nonexistent")), "vhd-tool", runs=("stall", "stall")
        )
