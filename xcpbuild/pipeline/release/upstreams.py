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
from typing import Any, Literal, cast

from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError, PatchError, SourceError
from xcpbuild.log import get_logger
from xcpbuild.model.package import PackageDef
from xcpbuild.model.plan import PlannedPackage
from xcpbuild.pipeline.sources import hunks, patch, source
from xcpbuild.pipeline.sources.package import DefinedPackage, Package

log = get_logger("release")

RefKind = Literal["pin", "upstream rework"]
PINNED: RefKind = "pin"
HEALTH: RefKind = "upstream rework"


@dataclass(frozen=True)
class PatchRow:
    """One line of the patch health table."""

    package: str
    ref: str
    patch: str
    status: hunks.PatchStatus | Literal["no patches", "no upstream to check", "ref not in upstream"]
    kind: RefKind = PINNED  # the pin, or a ref where upstream reworked the code (shown, never fatal)

    def to_json(self) -> dict[str, Any]:
        return {"package": self.package, "ref": self.ref, "patch": self.patch, "status": self.status, "kind": self.kind}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PatchRow:
        status = cast(hunks.PatchStatus, str(data["status"]))  # as the run wrote it
        kind: RefKind = HEALTH if data.get("kind") == HEALTH else PINNED
        return cls(str(data["package"]), str(data["ref"]), str(data["patch"]), status, kind)


@dataclass
class SourcesResult:
    """What the sources step found: health rows, the upstream each package uses, what was left out."""

    rows: list[PatchRow] = field(default_factory=list)
    upstreams: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # package -> the one-line reason


class SourcesFailed(Exception):
    """A series does not apply at its pin: the error to report, and the rows that show it."""

    def __init__(self, error: PatchError, rows: list[PatchRow]) -> None:
        super().__init__(error.message)
        self.error, self.rows = error, rows


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


def _health(settings: Settings, pkg: Package, url: str | None, pinned_ref: str, rows: list[PatchRow]) -> None:
    """Rows for the pin (which must apply) and, for a definition, its ``health_refs`` (shown only)."""
    found = patch.check(settings, pkg, [pinned_ref], upstream=url)
    rows += [PatchRow(pkg.name, h.ref, h.patch, h.status) for h in found]
    bad = [h for h in found if not hunks.is_healthy(h.status)]
    if bad:
        error = PatchError(
            f"{pkg.name}: patch {bad[0].patch} {bad[0].status} on {bad[0].ref}",
            hint=f"run `xcpbuild patch check {pkg.cli_name} --ref {bad[0].ref}` for the hunk",
        )
        raise SourcesFailed(error, rows)
    if not found or not isinstance(pkg, DefinedPackage):
        return
    for ref in pkg.pin.health_refs:
        try:
            elsewhere = patch.check(settings, pkg, [ref], upstream=url)
        except SourceError:
            rows.append(PatchRow(pkg.name, ref, "-", "ref not in upstream", HEALTH))
            continue
        rows += [PatchRow(pkg.name, h.ref, h.patch, h.status, HEALTH) for h in elsewhere]


def sources(
    settings: Settings,
    packages: Sequence[PlannedPackage],
    resolved: Mapping[str, Package],
    overrides: Mapping[str, str],
) -> SourcesResult:
    """Fetch (sha256-checked) and check each git upstream; leave out the unreachable ones the plan allows.

    Raises SourcesFailed when a series does not apply at its pin.
    """
    result = SourcesResult()
    for planned in packages:
        pkg = resolved[planned.name]
        if not isinstance(pkg, DefinedPackage):
            # A package repository: its spec names the upstream and the ref, if it does.
            given = overrides.get(planned.name)
            if given:
                result.upstreams[pkg.name] = given
            if pkg.pinned_ref is None or not (given or pkg.upstream_url) or not pkg.patch_files:
                result.rows.append(PatchRow(pkg.name, "(its spec)", "-", "no upstream to check"))
                continue
            _health(settings, pkg, given, pkg.pinned_ref, result.rows)
            continue
        definition, target = pkg.definition, pkg.target.name
        if definition.source_kind != "git":
            result.rows.append(PatchRow(pkg.name, "(this project)", "-", "no patches"))
            continue
        check_plan_ref(planned, definition, target)
        url = upstream_for(planned, definition, overrides)
        if url is None:
            raise ConfigError(f"package {pkg.name} has no upstream", hint=f"pass --upstream {pkg.name}=PATH_OR_URL")
        try:
            source.mirror(settings, definition, url)
        except SourceError as exc:
            if planned.if_unreachable != "leave-out" or planned.name in overrides:
                raise
            result.left_out[pkg.name] = left_out_reason(pkg.name, url, exc)
            log.warning("%s is left out of this run: %s", pkg.name, result.left_out[pkg.name])
            continue
        result.upstreams[pkg.name] = url
        fetched = source.fetch(settings, definition, target, upstream=url)
        _health(settings, pkg, url, fetched.ref, result.rows)
    return result
