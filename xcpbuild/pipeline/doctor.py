"""Checks that the host has what xcpbuild's jobs need, each with a hint when it does not."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.adapters import engine, process
from xcpbuild.errors import EngineError

# Free space the main job needs: a base image, build trees and a repo tree.
MIN_FREE_BYTES = 5 * 1024**3


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    ok: bool
    required: bool
    detail: str
    hint: str = ""


_TOOLS: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    # (tool, version argv, needed by the main job, what it is for)
    ("rpmbuild", ("--version",), True, "build SRPMs/RPMs on the host and in checks"),
    ("rpmsign", ("--version",), True, "sign RPMs before publishing"),
    ("createrepo_c", ("--version",), True, "baseline for repodata benchmarks"),
    ("dnf", ("--version",), True, "install from staged and published repos"),
    ("gpg", ("--version",), True, "sign repomd.xml and RPMs"),
    ("gpgv", ("--version",), True, "verify repomd.xml and provenance signatures"),
    ("qemu-img", ("--version",), True, "independent VHD reader for export checks"),
    ("mmdebstrap", ("--version",), True, "make the offline base image for the local target"),
    ("git", ("--version",), True, "GitPython drives it for sources and patches"),
    ("nsenter", ("--version",), True, "reach a network-none container's loopback from the verifier"),
)


def _tool_check(tool: str, version_args: tuple[str, ...], required: bool, purpose: str) -> Check:
    path = process.which(tool)
    package = process.TOOL_PACKAGES.get(tool, tool)
    if path is None:
        return Check(tool, False, required, f"missing ({purpose})", f"apt-get install -y {package}")
    detail = path
    try:
        done = process.run([path, *version_args], check=False, timeout=30)
        first = (done.stdout or done.stderr).strip().splitlines()
        if first:
            detail = first[0].strip()
    except Exception:  # a tool that cannot report its version is still present
        pass
    return Check(tool, True, required, detail)


def engine_check() -> Check:
    try:
        cli = engine.client(timeout=10)
        details = engine.info(cli)
    except EngineError as exc:
        return Check("docker engine", False, True, exc.message, exc.hint)
    return Check(
        "docker engine",
        True,
        True,
        f"{details.version} (API {details.api_version}, {details.storage_driver}) at {details.url}",
    )


def disk_check(path: Path) -> Check:
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    ok = free >= MIN_FREE_BYTES
    return Check(
        "free disk",
        ok,
        True,
        f"{free / 1024**3:.1f} GiB free at {probe}",
        "" if ok else f"free at least {MIN_FREE_BYTES // 1024**3} GiB or point XCPBUILD_WORK/XCPBUILD_CACHE elsewhere",
    )


def run_checks(work_dir: Path) -> list[Check]:
    checks = [engine_check()]
    checks.extend(_tool_check(*spec) for spec in _TOOLS)
    checks.append(disk_check(work_dir))
    return checks
