"""Prove a freshly built export-server RPM behaves: install it, start it, stall it.

The RPM (with what the target's base repository supplies) is installed with
rpm into a clean container of the target's image, and the *installed*
``xcp-export-server`` is started there on a sparse test disk. The container
keeps network none; the verifier runs on the host inside the container's
network namespace (``nsenter --net``), so it reaches 127.0.0.1 of the
container without giving the container any network.

Four trials: the default (wait) policy must deliver raw and VHD exports byte
for byte through a long client stall; ``--eagain-policy legacy-retry`` must
truncate both, as vhd-tool 0.20.0 did in 2018. A trial that goes the other way
fails the check: a fix that cannot be told apart from the bug proves nothing.

The two servers (one per policy, each on its own port) run side by side and the
four trials at the same time, from one verifier process (``python -m
xcpbuild.verifier``): each download has its own connection and its own stall, so
they prove the same as one after the other, in the time of one.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from xcpbuild import verifier
from xcpbuild.adapters import container
from xcpbuild.config import Settings
from xcpbuild.errors import VerifyError
from xcpbuild.log import get_logger, step
from xcpbuild.model.keys import one_of
from xcpbuild.pipeline.build import image

log = get_logger("exportcheck")

BOX_DIR = PurePosixPath("/tmp/exportcheck")
PORTS: dict[Policy, int] = {"wait": 8080, "legacy-retry": 8081}  # one server per policy, side by side
DISK_NAME = "disk0"
# 48 MiB and three sectors: a last partial VHD block, and more data than the
# kernel's socket buffers hold, so a stalled client really fills them.
DISK_SIZE = 48 * 1024 * 1024 + 3 * 512
# The installed server's --eagain-policy values, and what each must do under a stall.
Policy = Literal["wait", "legacy-retry"]
Expectation = Literal["survive", "fail"]
ExportFormat = Literal["raw", "vhd"]
POLICIES: tuple[tuple[Policy, Expectation], ...] = (("wait", "survive"), ("legacy-retry", "fail"))
FORMATS: tuple[ExportFormat, ...] = ("raw", "vhd")


@dataclass
class Trial:
    policy: Policy
    fmt: ExportFormat
    expected: Expectation
    outcome: verifier.Outcome
    match: bool | None
    bytes_received: int
    content_length: int | None
    passed: bool
    detail: str


@dataclass
class ExportCheckResult:
    installed: list[str] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem and bool(self.trials) and all(t.passed for t in self.trials)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_test_disk(path: Path, size: int = DISK_SIZE) -> Path:
    """A sparse raw disk: holes, data at odd offsets, data in the last partial block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as disk:
        disk.truncate(size)
        offset = 4096 + 17
        while offset < size - 1024 * 1024:
            disk.seek(offset)
            disk.write(os.urandom(1024 * 1024 + 123))
            offset += 3 * 1024 * 1024 + 4099  # leaves whole 2 MiB blocks empty now and then
        disk.seek(size - 700)
        disk.write(os.urandom(700))
    return path


def _start_servers(box: container.BuildContainer, token: str) -> dict[Policy, str]:
    """Start one installed server per policy, side by side; their pids once both say ``listening on``.

    One exec starts both and waits in the container's shell: every exec is a round trip through
    the engine, and the verify step is on the warm run's critical path.
    """
    launches = []
    for policy, _ in POLICIES:
        log_path = f"{BOX_DIR}/server-{policy}.log"
        launches.append(
            f"XCPBUILD_EXPORT_TOKEN={token} nohup xcp-export-server --disk {DISK_NAME}={BOX_DIR}/disk.img "
            f'--host 127.0.0.1 --port {PORTS[policy]} --eagain-policy {policy} > {log_path} 2>&1 & pids="$pids $!"'
        )
    logs = " ".join(f"{BOX_DIR}/server-{policy}.log" for policy, _ in POLICIES)
    script = "; ".join(
        [
            "pids=''",
            *launches,
            "echo pids$pids",
            "i=0",
            f"while [ $i -lt 600 ]; do up=0; for f in {logs}; do grep -q 'listening on' $f && up=$((up+1)); done; "
            f"[ $up -eq {len(POLICIES)} ] && echo up && exit 0; kill -0 $pids 2>/dev/null || break; "
            "sleep 0.05; i=$((i+1)); done",
            f"tail -n 5 {logs}",
            "exit 1",
        ]
    )
    done = box.exec(["sh", "-c", script], check=False)
    lines = done.output.strip().splitlines()
    pid_line = next((line for line in lines if line.startswith("pids ")), "pids")
    pids = dict(zip((policy for policy, _ in POLICIES), pid_line.split()[1:], strict=False))
    if done.exit_code != 0 or lines[-1:] != ["up"]:
        for pid in pids.values():
            box.exec(["sh", "-c", f"kill {pid}"], check=False)
        raise VerifyError(f"the installed xcp-export-servers did not both start: {done.output.strip()[-300:]}")
    return pids


def _judge(policy: Policy, fmt: ExportFormat, expected: Expectation, report: dict[str, Any]) -> Trial:
    outcome = one_of(report.get("outcome"), verifier.OUTCOMES) or "error"
    survived = outcome == "complete" and report.get("match") is True
    passed = survived if expected == "survive" else (outcome == "truncated" and not survived)
    return Trial(
        policy=policy,
        fmt=fmt,
        expected=expected,
        outcome=outcome,
        match=report.get("match"),
        bytes_received=int(report.get("bytes_received") or 0),
        content_length=report.get("content_length"),
        passed=passed,
        detail=str(report.get("detail", "")),
    )


def _all_trials(box: container.BuildContainer, disk: Path, token: str, stall: float) -> list[Trial]:
    """Both servers up, then the four trials at once; the servers are stopped whatever happens."""
    pids: dict[Policy, str] = {}
    try:
        with step("start the installed server with each --eagain-policy"):
            pids = _start_servers(box, token)
        plans = [(policy, expected, fmt) for policy, expected in POLICIES for fmt in FORMATS]
        urls = [
            f"http://127.0.0.1:{PORTS[policy]}/export_raw_vdi?vdi={DISK_NAME}&format={fmt}" for policy, _, fmt in plans
        ]
        # One light verifier process (standard library + xcpbuild.verifier) downloads all four at once.
        argv = [
            sys.executable, "-m", "xcpbuild.verifier", *urls,
            "--token", token, "--stall", f"{stall:g}@0.3", "--expect-disk", str(disk),
        ]  # fmt: skip
        what = f"four trials at once, each with a {stall:g} s stall (wait must survive, legacy-retry fail)"
        with step(what):
            done = container.run_in_netns(box, argv, timeout=stall * 4 + 120)
        try:
            reports = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise VerifyError(f"the verifier printed no report: {(done.stderr or done.stdout).strip()[-300:]}") from exc
        trials = [
            _judge(policy, fmt, expected, report)
            for (policy, expected, fmt), report in zip(plans, reports, strict=True)
        ]
        for trial in trials:
            log.info(
                "%s %s: %s (%d of %s bytes)%s",
                trial.fmt,
                trial.policy,
                trial.outcome,
                trial.bytes_received,
                trial.content_length,
                "" if trial.passed else f" -- expected it to {trial.expected}",
            )
        return trials
    finally:
        for pid in pids.values():
            box.exec(["sh", "-c", f"kill {pid}; while kill -0 {pid} 2>/dev/null; do sleep 0.1; done"], check=False)


def proof_line(result: ExportCheckResult, stall: float) -> str:
    """One line of what the trials proved (or where they went wrong)."""
    by = {(t.policy, t.fmt): t for t in result.trials}

    def show(policy: Policy) -> str:
        parts = []
        for fmt in FORMATS:
            trial = by.get((policy, fmt))
            if trial is not None:
                parts.append(f"{fmt} {trial.outcome} {trial.bytes_received}/{trial.content_length}")
        return ", ".join(parts)

    if not result.ok:
        return f"not proven: {result.problem or 'no trial ran'}"
    return (
        f"--eagain-policy wait survived a {stall:g} s stall byte-exact ({show('wait')}); "
        f"legacy-retry failed as in 2018 ({show('legacy-retry')})"
    )


def run(
    settings: Settings,
    target: str,
    rpms: list[Path],
    out_dir: Path,
    *,
    stall_seconds: float = 10.0,
    keep_container: bool = False,
) -> ExportCheckResult:
    """Install ``rpms`` in a clean container of ``target`` and put the server through the four trials."""
    result = ExportCheckResult()
    out_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    disk = make_test_disk(out_dir / "disk.img")
    tag = image.build(settings, target).tag
    client = container.get_client()
    options = container.ContainerOptions(image=tag, role="verify", keep=keep_container, workdir=PurePosixPath("/tmp"))
    with container.BuildContainer(client, options) as box:
        box.put(rpms, BOX_DIR / "rpms")
        box.put([disk], BOX_DIR / "copy")
        # Copying in by tar fills the holes; punch them again so SEEK_DATA sees a sparse disk.
        box.exec(["cp", "--sparse=always", f"{BOX_DIR}/copy/disk.img", f"{BOX_DIR}/disk.img"])
        with step("install the RPMs in a clean container"):
            names = " ".join(f"{BOX_DIR}/rpms/{p.name}" for p in rpms)
            installed = box.exec(["sh", "-c", f"rpm -i {names} && rpm -qa --qf '%{{NEVRA}}\\n'"], user="0")
            # rpm -i may warn first; NEVRAs have no spaces.
            result.installed = [line for line in installed.output.splitlines() if line and " " not in line]
        try:
            result.trials = _all_trials(box, disk, token, stall_seconds)
        finally:
            # The servers' own logs are kept whatever happened: they say why a trial went as it did.
            for policy, _ in POLICIES:
                if box.exec(["test", "-f", f"{BOX_DIR}/server-{policy}.log"], check=False).exit_code == 0:
                    result.logs += [str(p) for p in box.get(BOX_DIR / f"server-{policy}.log", out_dir)]
    wrong = [t for t in result.trials if not t.passed]
    if wrong:
        first = wrong[0]
        result.problem = (
            f"{first.fmt} export with --eagain-policy {first.policy} was expected to {first.expected} "
            f"a {stall_seconds:g} s stall but ended {first.outcome}"
        )
    return result
