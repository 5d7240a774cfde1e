"""The main job's sources step: where each upstream comes from, whether it can be reached, patch health.

A package's upstream is ``--upstream PKG=...`` if given, else the plan's
``upstream``, else the definition's. A plan may say ``if_unreachable =
"leave-out"``: when that upstream cannot be cloned (no route to the host, no
such path), the package is left out of the run, said in one line with the URL,
git's reason and the ``--upstream`` hint, and listed in the summary; it is
never dropped silently. An upstream given with ``--upstream`` always has to
work. Reachable upstreams are fetched at the pin and sha256-checked; the series
must apply there, and its health on the definition's ``health_refs`` (where
upstream reworked the code) is shown too, without stopping the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError, PatchError, SourceError
from xcpbuild.log import get_logger
from xcpbuild.model.package import PackageDef, find_package
from xcpbuild.model.plan import PlannedPackage
from xcpbuild.pipeline.sources import hunks, patch, source

log = get_logger("release")

PINNED = "pin"
HEALTH = "upstream rework"
MISSING_REF = "ref not in upstream"


@dataclass
class SourcesResult:
    """What the sources step found: health rows, the upstream each package uses, what was left out."""

    rows: list[dict[str, str]] = field(default_factory=list)
    upstreams: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # package -> the one-line reason


def upstream_for(planned: PlannedPackage, pkg: PackageDef, overrides: Mapping[str, str]) -> str | None:
    """``--upstream`` over the plan's URL over the definition's."""
    return overrides.get(planned.name) or planned.upstream or pkg.upstream


def check_plan_ref(planned: PlannedPackage, pkg: PackageDef, target: str) -> None:
    """The plan's ``ref`` documents the pin; a plan that disagrees with the definition is an error."""
    pin = pkg.pin(target)
    if planned.ref and planned.ref != pin.ref:
        raise ConfigError(
            f"the plan builds {pkg.name} at {planned.ref}, but {pkg.path.name} pins {pin.ref} for {target}",
            hint=f"make `ref` in the plan match the pin, or change the pin (and its sha256) in {pkg.path}",
        )


def left_out_reason(name: str, url: str, error: SourceError) -> str:
    return (
        f"{url} is not reachable ({error.message}); "
        f"hint: --upstream {name}=PATH_OR_URL gives a clone, a bare mirror or another URL"
    )


def _health(settings: Settings, pkg: PackageDef, target: str, url: str | None, pinned_ref: str) -> list[dict[str, str]]:
    rows = []
    pin = pkg.pin(target)
    for item in patch.check(settings, pkg, [pinned_ref], upstream=url, target=target):
        rows.append({"package": pkg.name, "ref": item.ref, "patch": item.patch, "status": item.status, "kind": PINNED})
    bad = [r for r in rows if r["status"] not in (hunks.APPLIES, hunks.OFFSET)]
    if bad:
        raise PatchError(
            f"{pkg.name}: patch {bad[0]['patch']} {bad[0]['status']} on {bad[0]['ref']}",
            hint=f"run `xcpbuild patch check {pkg.name} --ref {bad[0]['ref']}` for the hunk",
        )
    if not rows:
        return rows
    for ref in pin.health_refs:
        try:
            found = patch.check(settings, pkg, [ref], upstream=url, target=target)
        except SourceError:
            rows.append({"package": pkg.name, "ref": ref, "patch": "-", "status": MISSING_REF, "kind": HEALTH})
            continue
        for item in found:
            rows.append(
                {"package": pkg.name, "ref": item.ref, "patch": item.patch, "status": item.status, "kind": HEALTH}
            )
    return rows


def sources(
    settings: Settings, packages: Sequence[PlannedPackage], target: str, overrides: Mapping[str, str]
) -> SourcesResult:
    """Fetch (sha256-checked) and check each git upstream; leave out the unreachable ones the plan allows."""
    result = SourcesResult()
    for planned in packages:
        pkg = find_package(settings.specs_dir, planned.name)
        if pkg.source_kind != "git":
            result.rows.append(
                {"package": pkg.name, "ref": "(this project)", "patch": "-", "status": "no patches", "kind": PINNED}
            )
            continue
        check_plan_ref(planned, pkg, target)
        url = upstream_for(planned, pkg, overrides)
        if url is None:
            raise ConfigError(f"package {pkg.name} has no upstream", hint=f"pass --upstream {pkg.name}=PATH_OR_URL")
        try:
            source.mirror(settings, pkg, url)
        except SourceError as exc:
            if planned.if_unreachable != "leave-out" or planned.name in overrides:
                raise
            result.left_out[pkg.name] = left_out_reason(pkg.name, url, exc)
            log.warning("%s is left out of this run: %s", pkg.name, result.left_out[pkg.name])
            continue
        result.upstreams[pkg.name] = url
        fetched = source.fetch(settings, pkg, target, upstream=url)
        result.rows += _health(settings, pkg, target, url, fetched.ref)
    return result
