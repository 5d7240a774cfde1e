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
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from xcpbuild.adapters import container
from xcpbuild.config import Settings
from xcpbuild.errors import VerifyError
from xcpbuild.log import get_logger, step
from xcpbuild.pipeline.build import image

log = get_logger("exportcheck")

BOX_DIR = "/tmp/exportcheck"
PORT = 8080
DISK_NAME = "disk0"
# 48 MiB and three sectors: a last partial VHD block, and more data than the
# kernel's socket buffers hold, so a stalled client really fills them.
DISK_SIZE = 48 * 1024 * 1024 + 3 * 512
POLICIES = (("wait", "survive"), ("legacy-retry", "fail"))
FORMATS = ("raw", "vhd")


@dataclass
class Trial:
    policy: str
    fmt: str
    expected: str  # survive | fail
    outcome: str  # the verifier's: complete | truncated | disconnected | error
    match: bool | None
    bytes_received: int
    content_length: int | None
    passed: bool
    detail: str
    stall: float = 0.0  # seconds the client stopped reading
    seconds: float = 0.0
    events: list[str] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # the verifier's (seconds, bytes)


@dataclass
class ExportCheckResult:
    installed: list[str] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem and bool(self.trials) and all(t.passed for t in self.trials)


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


def _start_server(box: container.BuildContainer, policy: str, token: str) -> str:
    log_path = f"{BOX_DIR}/server-{policy}.log"
    command = (
        f"XCPBUILD_EXPORT_TOKEN={token} nohup xcp-export-server --disk {DISK_NAME}={BOX_DIR}/disk.img "
        f"--host 127.0.0.1 --port {PORT} --eagain-policy {policy} > {log_path} 2>&1 & echo $!"
    )
    pid = box.exec(["sh", "-c", command]).output.strip().splitlines()[-1]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = box.exec(["cat", log_path], check=False).output
        if "listening on" in text:
            return pid
        if box.exec(["sh", "-c", f"kill -0 {pid}"], check=False).exit_code != 0:
            raise VerifyError(f"the installed xcp-export-server exited at start: {text.strip()[-300:]}")
        time.sleep(0.2)
    raise VerifyError("the installed xcp-export-server did not say `listening on` within 30 s")


def _trial(
    box: container.BuildContainer, disk: Path, token: str, *, policy: str, expected: str, fmt: str, stall: float
) -> Trial:
    url = f"http://127.0.0.1:{PORT}/export_raw_vdi?vdi={DISK_NAME}&format={fmt}"
    argv = [
        sys.executable, "-m", "xcpbuild", "--quiet", "verify", "backpressure", url,
        "--token", token, "--stall", f"{stall:g}@0.3", "--expect-disk", str(disk), "--json", "--no-report",
    ]  # fmt: skip
    done = container.run_in_netns(box, argv, timeout=stall * 4 + 120)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise VerifyError(f"the verifier printed no report: {(done.stderr or done.stdout).strip()[-300:]}") from exc
    outcome = str(report.get("outcome"))
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
        stall=stall,
        seconds=float(report.get("duration_s") or 0.0),
        events=[str(e) for e in report.get("events", [])],
        timeline=[(float(t), int(n)) for t, n in report.get("timeline", [])],
    )


def _policy_trials(
    box: container.BuildContainer,
    result: ExportCheckResult,
    disk: Path,
    token: str,
    *,
    policy: str,
    expected: str,
    stall: float,
) -> None:
    with step(f"installed server, --eagain-policy {policy}: a {stall:g} s stall must {expected}"):
        pid = _start_server(box, policy, token)
        try:
            for fmt in FORMATS:
                trial = _trial(box, disk, token, policy=policy, expected=expected, fmt=fmt, stall=stall)
                result.trials.append(trial)
                log.info(
                    "%s %s: %s (%d of %s bytes)%s",
                    fmt,
                    policy,
                    trial.outcome,
                    trial.bytes_received,
                    trial.content_length,
                    "" if trial.passed else f" -- expected it to {expected}",
                )
        finally:
            box.exec(["sh", "-c", f"kill {pid}; while kill -0 {pid} 2>/dev/null; do sleep 0.1; done"], check=False)


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
    options = container.ContainerOptions(image=tag, role="verify", keep=keep_container, workdir="/tmp")
    with container.BuildContainer(client, options) as box:
        box.put(rpms, f"{BOX_DIR}/rpms")
        box.put([disk], f"{BOX_DIR}/copy")
        # Copying in by tar fills the holes; punch them again so SEEK_DATA sees a sparse disk.
        box.exec(["cp", "--sparse=always", f"{BOX_DIR}/copy/disk.img", f"{BOX_DIR}/disk.img"])
        with step("install the RPMs in a clean container"):
            names = " ".join(f"{BOX_DIR}/rpms/{p.name}" for p in rpms)
            box.exec(["sh", "-c", f"rpm -i {names}"], user="0")
            result.installed = box.exec(["rpm", "-qa", "--qf", "%{NEVRA}\\n"]).output.split()
        try:
            for policy, expected in POLICIES:
                _policy_trials(box, result, disk, token, policy=policy, expected=expected, stall=stall_seconds)
        finally:
            # The servers' own logs are kept whatever happened: they say why a trial went as it did.
            for policy, _ in POLICIES:
                if box.exec(["test", "-f", f"{BOX_DIR}/server-{policy}.log"], check=False).exit_code == 0:
                    result.logs += [str(p) for p in box.get(f"{BOX_DIR}/server-{policy}.log", out_dir)]
    wrong = [t for t in result.trials if not t.passed]
    if wrong:
        first = wrong[0]
        result.problem = (
            f"{first.fmt} export with --eagain-policy {first.policy} was expected to {first.expected} "
            f"a {stall_seconds:g} s stall but ended {first.outcome}"
        )
    return result
