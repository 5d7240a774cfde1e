"""Move builds through XCP-ng's tag pipeline, one step at a time.

The steps are ``model.repo.PROMOTION_ORDER`` (incoming -> ci -> testing -> candidates ->
updates) and a step's koji tag is ``TAG_FORMAT`` filled with the release (``v8.3-testing``).
A build's place is the furthest pipeline tag it carries. Promoting moves it to the next step:
tag into the new tag, then untag it from the earlier pipeline tags, so an interruption leaves
it in both (the furthest counts; the next promotion also removes the leftover) and never in
neither. Skipping steps is refused
unless asked for.

``method="bypass"`` tags at once (tagBuildBypass: needs the admin or tag permission, no builder);
``method="task"`` asks the hub for a tagBuild task, which a builder runs under the hub's tag
policy, and returns its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xcpbuild.adapters.koji import Hub
from xcpbuild.errors import KojiError, UsageError
from xcpbuild.model.repo import PROMOTION_ORDER, parse_release

TAG_FORMAT = "v{release}-{step}"
METHODS = ("bypass", "task")


def pipeline_tags(release: str, order: Sequence[str] = PROMOTION_ORDER, fmt: str = TAG_FORMAT) -> list[str]:
    release = parse_release(release)
    return [fmt.format(release=release, step=step) for step in order]


@dataclass
class PromoteReport:
    nvr: str
    from_tag: str
    to_tag: str
    skipped: list[str]
    method: str
    task_id: int | None = None


def plan_step(current: int, wanted: int | None, tags: Sequence[str], *, allow_skip: bool) -> int:
    """The index of the tag to move to (pure: the refusal rules live here)."""
    last = len(tags) - 1
    if current == last:
        raise UsageError(f"the build is already in {tags[last]}, the last step", hint="there is nothing to promote")
    target = current + 1 if wanted is None else wanted
    if target <= current:
        raise UsageError(
            f"{tags[target]} is not after {tags[current]} in the pipeline ({' -> '.join(tags)})",
            hint="promotion only moves forward; untag by hand to go back",
        )
    if target > current + 1 and not allow_skip:
        raise UsageError(
            f"promoting from {tags[current]} to {tags[target]} skips {', '.join(tags[current + 1 : target])}",
            hint=f"promote one step ({tags[current + 1]}), or pass --allow-skip to skip deliberately",
        )
    return target


def place(hub: Hub, nvr: str, tags: Sequence[str]) -> int:
    """The index of the furthest pipeline tag ``nvr`` carries; KojiError when it carries none."""
    build = hub.call("getBuild", nvr)
    if not build:
        raise KojiError(f"koji has no build {nvr}", hint="check the NVR (`koji list-builds --package NAME`)")
    carried = {t["name"] for t in hub.call("listTags", build=nvr)}
    steps = [i for i, tag in enumerate(tags) if tag in carried]
    if not steps:
        raise KojiError(
            f"{nvr} is in no pipeline tag ({', '.join(tags)})",
            hint=f"import or tag it into {tags[0]} first (`xcpbuild koji import ... --tag {tags[0]}`)",
        )
    return max(steps)


def promote(
    hub: Hub,
    nvr: str,
    release: str,
    *,
    to_step: str | None = None,
    allow_skip: bool = False,
    method: str = "bypass",
    order: Sequence[str] = PROMOTION_ORDER,
) -> PromoteReport:
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    tags = pipeline_tags(release, order)
    wanted = None
    if to_step is not None:
        if to_step not in order:
            raise UsageError(f"{to_step!r} is not a pipeline step; steps: {', '.join(order)}")
        wanted = list(order).index(to_step)
    current = place(hub, nvr, tags)
    target = plan_step(current, wanted, tags, allow_skip=allow_skip)
    old, new = tags[current], tags[target]
    report = PromoteReport(nvr, old, new, list(tags[current + 1 : target]), method)
    name = nvr.rsplit("-", 2)[0]
    if not hub.call("listPackages", tagID=new, pkgID=name, inherited=True):
        raise KojiError(
            f"package {name} is not on the package list of {new}",
            hint=f"a koji admin adds it: koji add-pkg {new} {name} --owner USER",
        )
    if method == "task":
        report.task_id = int(hub.call("tagBuild", new, nvr, False, old))
        return report
    carried = {t["name"] for t in hub.call("listTags", build=nvr)}
    if new not in carried:
        hub.call("tagBuildBypass", new, nvr)
    for tag in tags[:target]:
        if tag in carried:
            hub.call("untagBuildBypass", tag, nvr)
    return report
