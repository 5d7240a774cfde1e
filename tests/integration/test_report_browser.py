"""The report pages in a real headless Chromium, made from real stalled downloads of the export server.

Two `xcpbuild verify backpressure` runs (the fixed policy and legacy-retry) each write their own
summary.json and report.html; a release page is then rendered from the same trials. Chromium
loads each page with no console error and no request off the file, and the charts and tables are
found in its DOM. The screenshots stay in WORK/screenshots/ as CI artefacts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT, need
from tests.fixtures import browser
from tests.integration.test_export_server import TOKEN, Server, random_disk, servers, start_server  # noqa: F401
from xcpbuild.config import load_settings
from xcpbuild.pipeline.release import report
from xcpbuild.pipeline.release.summary import ReleaseReport

MiB = 1024 * 1024
CHECKS = (
    "document.querySelectorAll('figure.trial svg').length",
    "Array.from(document.querySelectorAll('figure.trial svg')).every(s => s.getBoundingClientRect().width > 300)",
    "Array.from(document.querySelectorAll('table')).map(t => t.id).filter(Boolean)",
    "document.body.innerText",
)


def screenshots() -> Path:
    return load_settings().work_dir / "screenshots"


def _verify(server: Server, disk: Path, out: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "xcpbuild", "--quiet", "verify", "backpressure", server.export("d"),
         "--token", TOKEN, "--stall", "3@0.3", "--expect-disk", str(disk), "--report-dir", str(out)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120, env=dict(os.environ),
    )  # fmt: skip
    return done.returncode, done.stdout


def test_reports_render_in_chromium_with_charts_and_tables(tmp_path: Path, servers: list[Server]) -> None:  # noqa: F811
    need(browser.chromium() is not None, "`chromium` (Debian's package)")
    disk = random_disk(tmp_path / "d.raw", 24 * MiB)
    runs = {}
    for policy in ("wait", "legacy-retry"):
        server = start_server(tmp_path, {"d": disk}, "--eagain-policy", policy)
        servers.append(server)
        out = tmp_path / policy
        code, stdout = _verify(server, disk, out)
        assert f"report: {out / 'report.html'}" in stdout
        runs[policy] = json.loads((out / "summary.json").read_text())
        assert code == (0 if policy == "wait" else 14), stdout
        page = browser.open_page(out / "report.html", screenshots() / f"verify-{policy}.png", CHECKS)
        assert page.errors == [] and page.requests == []
        assert page.values[CHECKS[0]] == 1 and page.values[CHECKS[1]] is True
        text = page.values[CHECKS[3]]
        assert "stall" in text
        assert ("cut at" in text) == (policy == "legacy-retry"), text
    assert runs["wait"]["outcome"] == "complete" and runs["legacy-retry"]["outcome"] == "truncated"

    trials = [
        {**run, "policy": policy, "fmt": "raw", "expected": "survive" if policy == "wait" else "fail",
         "passed": True, "stall": 3.0, "seconds": run["duration_s"]}
        for policy, run in runs.items()
    ]  # fmt: skip
    summary = {
        "plan": "local.toml", "target": "local", "run_dir": str(tmp_path), "repo_root": str(tmp_path / "repo"),
        "ok": True, "failed_step": None, "error": None, "hint": None,
        "steps": [
            {"name": "sources", "status": "ok", "seconds": 0.1, "detail": "", "data": {"health": [
                {"package": "vhd-tool", "ref": "v0.20.0", "patch": "fix.patch", "status": "applies"},
                {"package": "vhd-tool", "ref": "v0.23.0", "patch": "fix.patch", "status": "conflicts"}]}},
            {"name": "verify", "status": "ok", "seconds": 9.0, "detail": "",
             "data": {"xcp-export-server": {"trials": trials}}},
        ],
    }  # fmt: skip
    path = report.write_release(tmp_path / "release", ReleaseReport.from_json(summary), release="8.3")
    page = browser.open_page(path, screenshots() / "release.png", CHECKS)
    assert page.errors == [] and page.requests == []
    assert page.values[CHECKS[0]] == 2
    assert {"steps", "patch-health", "trials"} <= set(page.values[CHECKS[2]])
    assert re.search(r"v0\.23\.0", page.values[CHECKS[3]])
    assert (screenshots() / "release.png").stat().st_size > 10_000
