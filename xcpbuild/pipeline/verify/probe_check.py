"""The main job's proof that a patch series fixes the bug: the probe, twice, on the upstream code.

Without the series the upstream code must fail the stall with the bug's own
words (the recipe's ``unpatched_error``, for vhd-tool 0.20.0
``Unix.Unix_error(Unix.EAGAIN, "sendfile", "")``); with the series it must
survive the same stall byte-exact. Both expectations must hold: a patched
probe that survives proves nothing if the unpatched one survives too (the stall
was too short to show the bug), and a probe that fails unpatched for another
reason is not the bug. The two probes run at the same time, each in its own
container; the probe image is made (or found) once before.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from xcpbuild.adapters import container
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError
from xcpbuild.log import get_logger, step
from xcpbuild.pipeline.verify import probe, probe_image

log = get_logger("probecheck")

RUNS = ("raw", "stall")  # the throttled run proves nothing more here and costs seconds


@dataclass
class ProbeSide:
    """One of the two probes, judged against what it had to show."""

    patched: bool
    expected: str  # fail | survive
    verdict: str  # the probe's: survived | failed
    passed: bool
    stall_bytes: int  # what the stalled client received
    file_bytes: int
    error_line: str  # the driver's own error line, "" when it printed none
    patches: list[str] = field(default_factory=list)
    reason: str = ""
    work_dir: str = ""


@dataclass
class ProbeCheckResult:
    package: str
    ref: str = ""
    commit: str = ""
    stall: float = 0.0
    expected_error: str = ""
    sides: list[ProbeSide] = field(default_factory=list)
    problem: str = ""
    proof: str = ""  # one line: what was proven, or why not

    @property
    def ok(self) -> bool:
        return not self.problem and len(self.sides) == 2 and all(s.passed for s in self.sides)


def error_line(stderr: str, expected: str) -> str:
    """The line of the driver's stderr that names the expected error, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if expected and expected in line:
            return line
    return lines[-1] if lines else ""


def judge(report: probe.ProbeReport, expected_error: str) -> ProbeSide:
    """Unpatched: must fail, with ``expected_error``. Patched: must survive (every byte, sha256 equal)."""
    stall_run = next((r for r in report.runs if r.name == "stall"), None)
    line = error_line(report.driver_stderr, expected_error)
    if report.patched:
        passed = report.survived
        reason = "" if passed else f"with the series it failed: {report.reason}"
    else:
        passed = not report.survived and bool(expected_error) and expected_error in report.driver_stderr
        if report.survived:
            reason = "without the series it survived the stall too, so the stall does not show the bug"
        elif not passed:
            reason = f"without the series it failed, but not with {expected_error!r}: {line or report.reason}"
        else:
            reason = ""
    return ProbeSide(
        patched=report.patched,
        expected="survive" if report.patched else "fail",
        verdict=report.verdict,
        passed=passed,
        stall_bytes=stall_run.bytes if stall_run else 0,
        file_bytes=report.file_bytes,
        error_line=line,
        patches=list(report.patches),
        reason=reason,
        work_dir=report.work_dir,
    )


def proof_line(result: ProbeCheckResult) -> str:
    """``v0.20.0 unpatched: failed ... with <error>; with 1 patch: survived ... byte-exact``."""
    by = {side.patched: side for side in result.sides}
    bare, fixed = by.get(False), by.get(True)
    if bare is None or fixed is None or not result.ok:
        return f"not proven: {result.problem or 'a probe did not run'}"
    return (
        f"{result.ref} unpatched failed a {result.stall:g} s stall after {bare.stall_bytes}/{bare.file_bytes} bytes "
        f"with {bare.error_line}; with {len(fixed.patches)} patch(es) it survived byte-exact "
        f"({fixed.stall_bytes}/{fixed.file_bytes} bytes, sha256 equal)"
    )


def run(
    settings: Settings,
    name: str,
    *,
    upstream: str | None,
    target: str,
    stall: float,
    keep_container: bool = False,
) -> ProbeCheckResult:
    """Probe ``name`` without and with its series at the same time; judge both."""
    _, recipe = probe.load_recipe(settings, name, target)
    if not recipe.unpatched_error:
        raise ConfigError(
            f"the probe recipe of {name} does not say how the unpatched code fails",
            hint="add `unpatched_error = '...'` (the line the bug prints) to its [probe] table",
        )
    result = ProbeCheckResult(package=name, stall=stall, expected_error=recipe.unpatched_error)
    client = container.get_client()
    probe_image.ensure(settings, recipe, client)  # once, before the two probes look for it

    def one(patched: bool) -> probe.ProbeReport:
        return probe.probe(
            settings,
            name,
            upstream=upstream,
            apply_patches=patched,
            stall=stall,
            keep=keep_container,
            client=client,
            target=target,
            runs=RUNS,
        )

    with step(f"probe {name} without and with its series, at once ({stall:g} s stall)"), ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, patched) for patched in (False, True)]
        reports = [future.result() for future in futures]
    result.ref, result.commit = reports[0].ref, reports[0].commit
    result.sides = [judge(report, recipe.unpatched_error) for report in reports]
    wrong = [side for side in result.sides if not side.passed]
    if wrong:
        result.problem = f"{name}: {wrong[0].reason} (logs: {wrong[0].work_dir})"
    result.proof = proof_line(result)
    log.info("%s: %s", name, result.proof)
    return result
