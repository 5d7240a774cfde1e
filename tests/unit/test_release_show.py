"""What `xcpbuild release` prints, from a report built by hand (no tool runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xcpbuild.cli.release import _show
from xcpbuild.pipeline.release.summary import BuiltPackage, ChannelPublish, ReleaseReport
from xcpbuild.pipeline.release.upstreams import PatchRow
from xcpbuild.pipeline.release.verify_step import Checked
from xcpbuild.pipeline.verify.exportserver_check import ExportCheckResult, Trial


def _checked(name: str, result: ExportCheckResult) -> Checked:
    data = {**result.to_json(), "kind": "export-server", "proof": "p"}
    return Checked(name, result.ok, "p", result.problem, data)


def _report(tmp_path: Path) -> ReleaseReport:
    report = ReleaseReport("(embedded local)", "local", tmp_path / "runs" / "1", tmp_path / "repo")
    report.sources.status, report.sources.seconds, report.sources.detail = "ok", 1.24, "1 patch(es) apply"
    report.sources.data.health = [
        PatchRow("xcp-export-server", "(this project)", "-", "no patches"),
        PatchRow("vhd-tool", "v0.20.0", "0001-wait.patch", "applies with offset"),
    ]
    report.build.status = "ok"
    report.build.data.packages["xcp-export-server"] = BuiltPackage(
        tmp_path / "builds" / "xes-1", True, ("xcp-export-server-0.1.0-1.noarch",), ()
    )
    report.build.data.packages["vhd-tool"] = BuiltPackage(tmp_path / "builds" / "vt-1", False, (), ())
    check = ExportCheckResult(installed=["xcp-export-server-0.1.0-1.noarch"])
    check.trials = [
        Trial("wait", "raw", "survive", "complete", True, 50, 50, True, "complete"),
        Trial("legacy-retry", "vhd", "fail", "truncated", False, 20, None, True, "cut"),
    ]
    report.verify.status = "failed"
    report.verify.data.checks["xcp-export-server"] = _checked("xcp-export-server", check)
    report.verify.data.checks["other"] = _checked("other", ExportCheckResult())  # no trials: no table
    report.publish.status = report.install.status = "skipped"
    report.failed_step = "verify"
    return report


def test_show_prints_every_step_the_health_table_the_trials_and_the_build_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report(tmp_path)
    _show(report)
    out = capsys.readouterr().out.splitlines()
    assert "release of plan (embedded local) on target local" in out
    health = out.index("patch health")
    assert out[health + 3].split() == ["xcp-export-server", "(this", "project)", "-", "no", "patches", "pin"]
    assert out[health + 4].split() == ["vhd-tool", "v0.20.0", "0001-wait.patch", "applies", "with", "offset", "pin"]
    steps = [line.split()[:3] for line in out[4:9]]
    assert steps == [
        ["sources", "ok", "1.2s"],
        ["build", "ok", "0.0s"],
        ["verify", "failed", "0.0s"],
        ["publish", "skipped", "0.0s"],
        ["install", "skipped", "0.0s"],
    ]
    trials = out.index("verification of xcp-export-server (installed RPM, stalled client)")
    assert out[trials + 3].split() == ["wait", "raw", "survive", "complete", "50/50", "True"]
    assert out[trials + 4].split() == ["legacy-retry", "vhd", "fail", "truncated", "20/None", "True"]
    assert not any("verification of other" in line for line in out)
    assert f"  xcp-export-server: {tmp_path / 'builds' / 'xes-1'} (reused)" in out
    assert f"  vhd-tool: {tmp_path / 'builds' / 'vt-1'}" in out
    assert out[-1] == f"published repository:  {tmp_path / 'repo'}"


def test_the_summary_keeps_its_json_shape(tmp_path: Path) -> None:
    report = _report(tmp_path)
    report.publish.data.channels["testing"] = ChannelPublish(["a-1-1.noarch"], [3, None])
    data = json.loads(json.dumps(report.to_json()))
    steps = {s["name"]: s for s in data["steps"]}
    assert list(steps) == ["sources", "build", "verify", "publish", "install"]
    assert steps["sources"]["data"]["health"][1] == {
        "package": "vhd-tool",
        "ref": "v0.20.0",
        "patch": "0001-wait.patch",
        "status": "applies with offset",
        "kind": "pin",
    }
    assert steps["build"]["data"]["xcp-export-server"] == {
        "folder": str(tmp_path / "builds" / "xes-1"),
        "reused": True,
        "artifacts": ["xcp-export-server-0.1.0-1.noarch"],
    }
    trial = steps["verify"]["data"]["xcp-export-server"]["trials"][0]
    assert (trial["policy"], trial["fmt"], trial["outcome"], trial["bytes_received"]) == ("wait", "raw", "complete", 50)
    assert steps["publish"]["data"] == {"testing": {"added": ["a-1-1.noarch"], "generations": [3, None]}}
    assert steps["install"]["data"] == {}
    assert (data["failed_step"], data["ok"], data["run_dir"]) == ("verify", False, str(tmp_path / "runs" / "1"))
