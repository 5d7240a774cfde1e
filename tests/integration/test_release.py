"""The main job end to end on the embedded default plan, against the real engine, rpm, gpg and dnf.

vhd-tool is in the run. Its real upstream is not reachable from CI, so by default a stand-in
upstream of our own (tests/fixtures/vhd_tool_standin.py: vhd-tool 0.20.0's sendfile-and-retry
copy path, failing a stall with the 2018 line) takes its place, in a copy of this project that
pins the stand-in's tarball. With XCPBUILD_VHD_TOOL_UPSTREAM pointing at a real vhd-tool clone
or mirror, the same tests run this project on the real thing. Nothing here contacts a public
host: every upstream is given with --upstream, or is a file:// path that does not exist.

One clean work folder per module holds a first run that does everything (the ``first_run``
fixture, made by whichever test needs it first). On top of it, each test on its own: a second run
with nothing changed must reuse every build (no build container) and publish nothing new; a run
made to fail at verify must leave the published repository exactly as it was; a run whose plan
upstream is unreachable leaves vhd-tool out and says so, and one given an unreachable upstream
stops. None changes what the others see, so they pass in any order or alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.conftest import PROJECT_ROOT, need, need_tool
from tests.fixtures import browser
from tests.fixtures.vhd_tool_standin import EAGAIN_LINE, make_standin
from tests.integration.test_report_browser import screenshots
from xcpbuild.adapters.engine import Engine
from xcpbuild.errors import ContainerStepError, SourceError, VerifyError
from xcpbuild.model.package import read_series

REAL_VHD_TOOL = os.environ.get("XCPBUILD_VHD_TOOL_UPSTREAM")

TOOLS = ("rpmbuild", "rpmsign", "createrepo_c", "dnf", "gpg", "nsenter")


def _needs() -> None:
    """What every test here needs besides the engine (the docker_client fixture)."""
    need_tool(*TOOLS)
    need(os.geteuid() == 0, "root (verify enters the container's network namespace)")


class Run(NamedTuple):
    code: int
    report: dict[str, Any]
    stderr: str  # with as_json=False: everything the run printed
    pid: int  # of the CLI process: its containers are named xcpbuild-ROLE-PID-...


@dataclass(frozen=True)
class Setup:
    work: Path
    project: Path
    upstream: str
    patches: list[str]  # the vhd-tool series the SRPM must hold


def _release(setup: Setup, *args: str, upstream: bool = True, as_json: bool = True) -> Run:
    """Run the main job; the report is --json's, or (as_json=False) the run's summary.json, and the text."""
    env = dict(os.environ, XCPBUILD_WORK=str(setup.work), XCPBUILD_PROJECT=str(setup.project))
    extra = ["--upstream", f"vhd-tool={setup.upstream}"] if upstream else []
    argv = [sys.executable, "-m", "xcpbuild", "release", *(["--json"] if as_json else []), *extra, *args]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=setup.project
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=1800)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    if as_json:
        return Run(proc.returncode, json.loads(stdout) if stdout.strip() else {}, stderr, proc.pid)
    found = re.search(r"^logs and summary.json: (\S+)$", stdout, re.MULTILINE)
    assert found, stdout[-2000:] + stderr[-2000:]
    report = json.loads((Path(found[1]) / "summary.json").read_text())
    return Run(proc.returncode, report, stdout + stderr, proc.pid)


_PAGE_CHECKS = ("document.querySelectorAll('figure.trial svg').length", "document.body.innerText")
PROJECT_SHOTS = screenshots()


def _agents_for(home: Path) -> list[int]:
    """Pids of gpg-agent processes serving ``home``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"gpg-agent") and str(home).encode() in b" ".join(argv):
            pids.append(int(proc.name))
    return pids


def _steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in report["steps"]}


def _tree_digest(root: Path) -> dict[str, str]:
    """Every file and symlink of a repository tree, with its content hash or link target."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel.endswith(".lock"):
            continue
        if path.is_symlink():
            found[rel] = "-> " + str(path.readlink())
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _build_containers_created(client: Engine, run: Run, since: float, until: float) -> int:
    """Build containers that ``run`` created (other jobs share the engine: only its own names count)."""
    events = client.sdk.events(
        since=int(since),
        until=int(until) + 1,
        filters={"type": "container", "event": "create", "label": "org.xcpbuild.role=build"},
        decode=True,
    )
    prefix = f"xcpbuild-build-{run.pid}-"
    return sum(1 for event in events if event.get("Actor", {}).get("Attributes", {}).get("name", "").startswith(prefix))


@pytest.fixture(scope="module")
def setup(docker_client: Engine, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    need_tool("git")
    work = tmp_path_factory.mktemp("release-work")
    if REAL_VHD_TOOL:
        series = [patch.name for patch in read_series(PROJECT_ROOT / "patches", "vhd-tool")]
        return Setup(work, PROJECT_ROOT, REAL_VHD_TOOL, series)
    standin = make_standin(tmp_path_factory.mktemp("vhd-tool-standin"))
    return Setup(work, standin.project, str(standin.upstream), [standin.patch.name])


@pytest.fixture(scope="module")
def first_run(setup: Setup) -> Run:
    _needs()
    return _release(setup)


def _srpm_files(srpm: Path) -> list[str]:
    done = subprocess.run(["rpm", "-qpl", str(srpm)], capture_output=True, text=True, check=True)
    return done.stdout.split()


def _published(first_run: Run) -> None:
    assert first_run.code == 0, "the first run failed, so there is nothing to build on:\n" + first_run.stderr[-3000:]


def test_first_run_does_the_whole_loop(setup: Setup, first_run: Run) -> None:
    _needs()
    work = setup.work
    code, report, stderr, _ = first_run
    assert code == 0, stderr[-3000:]
    steps = _steps(report)
    assert [s["status"] for s in report["steps"]] == ["ok"] * 5, report["steps"]
    assert report["left_out"] == {}
    # build: every package built fresh into its own folder, with a record
    for name, data in steps["build"]["data"].items():
        assert not data["reused"], name
        assert (Path(data["folder"]) / "build-record.json").is_file()
        # the plan requires both of our packages to build identically twice
        if name in ("xcp-export-server", "xcpbuild-local-platform"):
            assert data["reproducible"] and all(data["reproducible"].values()), (name, data["reproducible"])
    # verify: the installed server survived the stall, the legacy policy failed like in 2018
    trials = steps["verify"]["data"]["xcp-export-server"]["trials"]
    by_policy = {(t["policy"], t["fmt"]): t for t in trials}
    assert set(by_policy) == {("wait", "raw"), ("wait", "vhd"), ("legacy-retry", "raw"), ("legacy-retry", "vhd")}
    for fmt in ("raw", "vhd"):
        fixed, legacy = by_policy[("wait", fmt)], by_policy[("legacy-retry", fmt)]
        assert fixed["outcome"] == "complete" and fixed["match"] is True
        assert fixed["bytes_received"] == fixed["content_length"]
        assert legacy["outcome"] == "truncated"
        assert legacy["bytes_received"] < legacy["content_length"]
    installed = steps["verify"]["data"]["xcp-export-server"]["installed"]
    assert any(n.startswith("xcp-export-server-") for n in installed)
    # publish: signed packages in the XCP-ng layout; install: dnf took it from there, then promoted
    repo = Path(report["repo_root"])
    testing = repo / "8" / "8.3" / "testing"
    assert list((testing / "x86_64" / "Packages").glob("xcp-export-server-*.noarch.rpm"))
    assert list((testing / "Source" / "SPackages").glob("xcp-export-server-*.src.rpm"))
    assert (testing / "x86_64" / "repodata" / "repomd.xml.asc").is_file()
    assert any(n.startswith("xcp-export-server-") for n in steps["install"]["data"]["installed"])
    assert list((repo / "8" / "8.3" / "updates" / "x86_64" / "Packages").glob("xcp-export-server-*.rpm"))
    # sources: the series applies at the pin; its health where upstream reworked the code is shown too
    health = steps["sources"]["data"]["health"]
    pinned = [h for h in health if h["package"] == "vhd-tool" and h["kind"] == "pin"]
    assert [(h["ref"], h["patch"], h["status"]) for h in pinned] == [("v0.20.0", p, "applies") for p in setup.patches]
    reworked = {h["ref"]: h["status"] for h in health if h["package"] == "vhd-tool" and h["kind"] != "pin"}
    assert {"v0.27.0", "v0.40.0", "v0.43.0"} <= set(reworked)
    assert reworked["v0.27.0"] != "applies"
    # verify: the probe failed unpatched with the 2018 line and survived patched, byte-exact
    probe = steps["verify"]["data"]["vhd-tool"]
    sides = {side["patched"]: side for side in probe["sides"]}
    assert sides[False]["verdict"] == "failed" and EAGAIN_LINE in sides[False]["error_line"]
    assert sides[False]["stall_bytes"] < sides[False]["file_bytes"]
    assert sides[True]["verdict"] == "survived" and sides[True]["stall_bytes"] == sides[True]["file_bytes"]
    assert sides[True]["patches"] == setup.patches and sides[False]["patches"] == []
    assert probe["stall"] >= 10
    assert EAGAIN_LINE in report["proofs"]["vhd-tool"] and "survived byte-exact" in report["proofs"]["vhd-tool"]
    assert "legacy-retry failed as in 2018" in report["proofs"]["xcp-export-server"]
    # the SRPM holds the series and was published to Source/
    srpms = list(
        (Path(report["repo_root"]) / "8" / "8.3" / "testing" / "Source" / "SPackages").glob("vhd-tool-*.src.rpm")
    )
    assert len(srpms) == 1 and srpms[0].name.startswith("vhd-tool-0.20.0-4.4.")
    assert set(setup.patches) <= set(_srpm_files(srpms[0]))
    # provenance: signed into both channels' generations (updates' by the promotion); the published RPM
    # checks out against this checkout
    testing = Path(report["repo_root"]) / "8" / "8.3" / "testing"
    for channel in ("testing", "updates"):
        assert (testing.parent / channel / "x86_64" / "repodata" / "provenance.json").is_file(), channel
    (published,) = (testing / "x86_64" / "Packages").glob("xcp-export-server-*.noarch.rpm")
    checked = subprocess.run(
        [sys.executable, "-m", "xcpbuild", "verify", "provenance", str(published), "--key",
         str(setup.work / "release-key.asc"), "--checkout", str(PROJECT_ROOT)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "specs/xcp-export-server.toml" in checked.stdout
    assert Path(report["run_dir"], "summary.json").is_file()
    # report.html: the four trials charted, builds with their outputs, in a real Chromium
    page = Path(report["run_dir"], "report.html")
    assert f"report: {page}" in stderr  # --json keeps stdout for the JSON
    need(browser.chromium() is not None, "`chromium` (Debian's package)")
    shown = browser.open_page(page, work / "screenshots" / "release.png", _PAGE_CHECKS)
    PROJECT_SHOTS.mkdir(parents=True, exist_ok=True)
    (PROJECT_SHOTS / "release-run.png").write_bytes((work / "screenshots" / "release.png").read_bytes())
    assert shown.errors == [] and shown.requests == []
    assert shown.values[_PAGE_CHECKS[0]] == 4
    assert all(
        n in shown.values[_PAGE_CHECKS[1]] for n in (a for d in steps["build"]["data"].values() for a in d["artifacts"])
    )
    assert _agents_for(work / "release-key") == [], "the run left its gpg-agent running"


def test_second_run_reuses_builds_and_publishes_nothing(docker_client: Engine, setup: Setup, first_run: Run) -> None:
    _needs()
    _published(first_run)
    work = setup.work
    before = _tree_digest(work / "repo")
    assert before, "the first run left no repository"
    started = time.time()
    second = _release(setup, as_json=False)
    code, report, text, _ = second
    ended = time.time()
    assert code == 0, text[-3000:]
    # Both probes are shown, with what the unpatched one said.
    assert re.search(r"^  vhd-tool: v0\.20\.0 unpatched failed a 10 s stall .*survived byte-exact", text, re.MULTILINE)
    shown = [line for line in text.splitlines() if line.startswith(("none ", "1 patch"))]
    assert len(shown) == 2 and EAGAIN_LINE in shown[0] and "survived" in shown[1], text[-3000:]
    steps = _steps(report)
    assert all(data["reused"] for data in steps["build"]["data"].values())
    assert _build_containers_created(docker_client, second, started, ended) == 0
    assert steps["publish"]["data"]["testing"]["added"] == []
    assert steps["install"]["data"]["promote_added"] == []
    assert _tree_digest(work / "repo") == before


def test_a_failing_step_stops_the_loop_and_leaves_the_repo_untouched(setup: Setup, first_run: Run) -> None:
    _needs()
    _published(first_run)
    work = setup.work
    before = _tree_digest(work / "repo")
    # A 0.5 s stall is inside the legacy policy's 2 s retry budget, so the legacy server (and the
    # unpatched vhd-tool) survive it: the check cannot tell fix from bug, and must refuse to go on.
    code, report, stderr, _ = _release(setup, "--stall", "0.5")
    assert code == VerifyError.exit_code, stderr[-3000:]
    assert "step `verify`" in stderr
    statuses = {s["name"]: s["status"] for s in report["steps"]}
    assert statuses == {"sources": "ok", "build": "ok", "verify": "failed", "publish": "skipped", "install": "skipped"}
    assert report["failed_step"] == "verify"
    assert _tree_digest(work / "repo") == before
    run_dir = Path(report["run_dir"])
    assert (run_dir / "summary.json").is_file()
    assert list((run_dir / "verify").glob("server-*.log"))


def test_an_unreachable_plan_upstream_leaves_vhd_tool_out_and_says_so(setup: Setup, first_run: Run) -> None:
    _needs()
    _published(first_run)
    # The plan's URL is a file:// that does not exist: unreachable without any traffic leaving the host.
    missing = f"file://{setup.work}/no-such-host/vhd-tool.git"
    plan_text = (PROJECT_ROOT / "xcpbuild" / "plans" / "local.toml").read_text()
    assert "https://github.com/xapi-project/vhd-tool.git" in plan_text
    plan = setup.work / "unreachable.toml"
    plan.write_text(plan_text.replace("https://github.com/xapi-project/vhd-tool.git", missing))
    before = _tree_digest(setup.work / "repo")
    code, report, text, _ = _release(setup, "--plan", str(plan), upstream=False, as_json=False)
    assert code == 0, text[-3000:]
    reason = report["left_out"]["vhd-tool"]
    assert missing in reason and "--upstream vhd-tool=PATH_OR_URL" in reason
    assert "vhd-tool" not in _steps(report)["build"]["data"]
    assert "left out: vhd-tool" in _steps(report)["sources"]["detail"]
    shown = [line for line in text.splitlines() if missing in line]
    assert any("vhd-tool is left out of this run" in line for line in shown)  # said by the sources step
    assert any(line.startswith("  vhd-tool: ") for line in shown)  # and listed in the summary
    assert _tree_digest(setup.work / "repo") == before

    # An upstream given on the command line must work: there it stops the run at sources.
    code, report, stderr, _ = _release(setup, "--upstream", f"vhd-tool={missing}", upstream=False)
    assert code == SourceError.exit_code
    assert report["failed_step"] == "sources" and "step `sources`" in stderr


def test_a_failing_probe_image_build_fails_verify_and_keeps_the_builds(
    docker_client: Engine, setup: Setup, first_run: Run, tmp_path: Path
) -> None:
    """The probe image is built beside the build step: its failure is verify's, the builds stand."""
    _needs()
    _published(first_run)
    project = tmp_path / "project"
    shutil.copytree(setup.project, project, ignore=shutil.ignore_patterns(".git", ".venv", "_work", ".cache"))
    marker = f"no-probe-image-{uuid.uuid4().hex}"
    dockerfile = project / "containers" / "probe-ocaml" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"RUN echo {marker} >&2; exit 3\n")
    before = _tree_digest(setup.work / "repo")
    code, report, stderr, _ = _release(Setup(setup.work, project, setup.upstream, setup.patches))
    assert code == ContainerStepError.exit_code, stderr[-3000:]
    statuses = {s["name"]: s["status"] for s in report["steps"]}
    assert statuses == {"sources": "ok", "build": "ok", "verify": "failed", "publish": "skipped", "install": "skipped"}
    built = _steps(report)["build"]["data"]
    assert set(built) == {"xcpbuild-local-platform", "xcp-export-server", "vhd-tool"}
    assert all(Path(data["folder"], "build-record.json").is_file() for data in built.values())
    assert report["failed_step"] == "verify" and "probe-ocaml" in report["error"] and "failed" in report["error"]
    assert "step `verify`" in stderr
    assert _tree_digest(setup.work / "repo") == before
    boxes = docker_client.sdk.api.containers(all=True)  # as listed: other jobs' containers come and go
    assert not [box["Id"] for box in boxes if marker in str(box.get("Command", ""))]
