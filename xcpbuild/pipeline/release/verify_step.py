"""The main job's verify step: every package's check at the same time, each with one line of proof.

``export-server`` packages are installed in a clean container and stall-tested
(four trials at once); ``probe`` packages have their upstream code probed
without and with their series (two probes at once). All checks of a run go
side by side: they mostly wait out their stalls, so the step takes about as
long as its slowest check. Any check that does not hold fails the step, and
then nothing is published.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError, VerifyError
from xcpbuild.log import get_logger
from xcpbuild.model.plan import PlannedPackage
from xcpbuild.model.probe import ProbeRecipe
from xcpbuild.pipeline.sources.package import resolve
from xcpbuild.pipeline.verify import exportserver_check, probe, probe_check

log = get_logger("release")


@dataclass(frozen=True)
class Checked:
    """One package's check: whether it held, its one-line proof, and everything it recorded."""

    package: str
    ok: bool
    proof: str
    problem: str
    data: dict[str, Any]


def _export_server(
    settings: Settings, name: str, *, target: str, rpms: list[Path], out: Path, stall: float, keep: bool
) -> Checked:
    result = exportserver_check.run(settings, target, rpms, out, stall_seconds=stall, keep_container=keep)
    proof = exportserver_check.proof_line(result, stall)
    data = {**asdict(result), "kind": "export-server", "proof": proof}
    return Checked(name, result.ok, proof, result.problem, data)


def _has_series(settings: Settings, name: str, target: str) -> bool:
    # A definition's series, or a package repository's PatchNNNN lines for this target.
    return bool(resolve(settings, name, target).patch_files)


def probe_recipes(settings: Settings, packages: Sequence[PlannedPackage], target: str) -> dict[str, ProbeRecipe]:
    """The probe recipe of each package this run will probe: its probe image can be made ahead of verify."""
    return {
        planned.name: probe.load_recipe(settings, planned.name, target)[1]
        for planned in packages
        if planned.verify == "probe" and _has_series(settings, planned.name, target)
    }


def _probe(
    settings: Settings,
    name: str,
    *,
    target: str,
    upstream: str | None,
    stall: float,
    keep: bool,
    ready: Callable[[], object] | None,
) -> Checked:
    if ready is not None:
        ready()  # its probe image, built beside the build step, may still be on its way
    if not _has_series(settings, name, target):
        # Nothing of ours to prove here (e.g. xcp-ng-8.2 builds upstream 0.43.0, which has its own fix).
        proof = f"no patch series for {target}: nothing to probe"
        return Checked(name, True, proof, "", {"kind": "probe", "proof": proof, "sides": []})
    result = probe_check.run(settings, name, upstream=upstream, target=target, stall=stall, keep_container=keep)
    data = {**asdict(result), "kind": "probe", "proof": result.proof}
    return Checked(name, result.ok, result.proof, result.problem, data)


def run(
    settings: Settings,
    *,
    target: str,
    packages: Sequence[PlannedPackage],
    binaries: Mapping[str, list[Path]],
    platform_rpms: list[Path],
    upstreams: Mapping[str, str],
    run_dir: Path,
    stall: float,
    keep_container: bool = False,
    probes_ready: Callable[[], object] | None = None,
    stop: Callable[[], None] | None = None,
) -> list[Checked]:
    """Run every planned check at once; ``require_all`` then says whether they all held.

    ``probes_ready`` waits for what the probes need that is still being made (the
    other checks start at once); ``stop`` ends that work when the step is
    interrupted, so the probes' wait ends with it.
    """
    jobs: list[Callable[[], Checked]] = []
    for planned in packages:
        name = planned.name
        if planned.verify == "export-server":
            rpms = [p for p in binaries.get(name, []) if p.name.endswith(".noarch.rpm")]
            if not rpms:
                raise ConfigError(f"{name} has no binary RPM to verify", hint='its plan entry needs stage = "rpm"')
            jobs.append(
                partial(
                    _export_server,
                    settings,
                    name,
                    target=target,
                    rpms=[*rpms, *platform_rpms],
                    out=run_dir / "verify",
                    stall=stall,
                    keep=keep_container,
                )
            )
        elif planned.verify == "probe":
            jobs.append(
                partial(
                    _probe,
                    settings,
                    name,
                    target=target,
                    upstream=upstreams.get(name),
                    stall=stall,
                    keep=keep_container,
                    ready=probes_ready,
                )
            )
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        # Each job in a copy of this context, so its log steps nest under verify's.
        futures = [pool.submit(contextvars.copy_context().run, job) for job in jobs]
        try:
            checked = [future.result() for future in futures]
        except BaseException:
            if stop is not None:  # Ctrl-C or a failed check: a probe waiting for its image must not wait it out
                stop()
            raise
    for item in checked:
        log.info("%s: %s", item.package, item.proof)
    return checked


def require_all(checked: Sequence[Checked], run_dir: Path) -> None:
    """VerifyError naming the first check that did not hold: then nothing may be published."""
    wrong = [item for item in checked if not item.ok]
    if wrong:
        raise VerifyError(f"{wrong[0].package}: {wrong[0].problem}", hint=f"read the logs in {run_dir / 'verify'}")
