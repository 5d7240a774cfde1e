"""Publish a channel from a koji tag, and show what that would change (``diff_tag``).

What XCP-ng's repository job does, with xcpbuild's guarantees: take the latest build of each
package in the tag, download its x86_64, noarch and src RPMs (the copy signed with a key koji
has a signature for, when ``sigkeys`` names one koji has; else the original), then publish them
with ``publish.publish``: signed, metadata built in staging, checked by dnf, swapped in
atomically. A download failure or a refused publish leaves the live repository untouched.

Downloads run in parallel into a cache keyed by the file's path on the hub; a file already
there is not downloaded again (downloads land under a temp name and are renamed whole, so a
present file is complete). When every package of the tag is already live in the channel,
nothing is downloaded and nothing is published.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xcpbuild.adapters import createrepo, gpg
from xcpbuild.adapters import koji as kojilib
from xcpbuild.adapters.koji import Hub
from xcpbuild.errors import KojiError
from xcpbuild.log import get_logger, step
from xcpbuild.pipeline.publish import evr, publish
from xcpbuild.pipeline.publish import repo as repolib
from xcpbuild.pipeline.publish.evr import DiffEntry

log = get_logger("koji.channel")

ARCHES = ("x86_64", "noarch", "src")
DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class RemoteRpm:
    name: str
    epoch: str
    version: str
    release: str
    arch: str
    relpath: str  # under topurl
    size: int | None  # None for a signed copy (its signature header changes the size)
    sigkey: str | None

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"


@dataclass
class TagPublishReport:
    tag: str
    builds: int
    rpms: int
    downloaded: int
    reused: int
    download_seconds: float
    publish: publish.PublishReport | None
    signed_by_koji: int = 0
    skipped: list[str] = field(default_factory=list)


def tag_rpms(hub: Hub, tag: str, sigkeys: Sequence[str] = ()) -> tuple[int, list[RemoteRpm]]:
    """(number of latest builds, their publishable RPMs) of ``tag``, three hub round trips in all."""
    if not hub.call("getTag", tag):
        raise KojiError(f"koji has no tag {tag!r}", hint="`koji list-tags` shows the tags")
    builds = hub.call("listTagged", tag, latest=True)
    if not builds:
        return 0, []
    per_build = hub.multicall([("listRPMs", (), {"buildID": b["build_id"], "arches": list(ARCHES)}) for b in builds])
    pairs = [(b, r) for b, rpms in zip(builds, per_build, strict=True) for r in rpms]
    sigs: list[list[dict[str, Any]]] = (
        hub.multicall([("queryRPMSigs", (), {"rpm_id": r["id"]}) for _, r in pairs]) if sigkeys else [[]] * len(pairs)
    )
    wanted = [k.lower() for k in sigkeys]
    out = []
    for (build, rpm), rpm_sigs in zip(pairs, sigs, strict=True):
        have = {str(s["sigkey"]).lower() for s in rpm_sigs}
        key = next((k for k in wanted if k in have), None)
        out.append(
            RemoteRpm(
                name=str(rpm["name"]),
                epoch=str(rpm["epoch"] or 0),
                version=str(rpm["version"]),
                release=str(rpm["release"]),
                arch=str(rpm["arch"]),
                relpath=kojilib.build_rpm_path(build, rpm, key),
                size=None if key else int(rpm["size"]),
                sigkey=key,
            )
        )
    return len(builds), out


def cache_path(cache_dir: Path, hub: Hub, rpm: RemoteRpm) -> Path:
    host = urlsplit(hub.profile.topurl).netloc.replace(":", "_") or "koji"
    return cache_dir / host / rpm.relpath


def fetch(
    hub: Hub, rpms: Sequence[RemoteRpm], cache_dir: Path, workers: int = DEFAULT_WORKERS
) -> tuple[list[Path], int]:
    """Local paths of ``rpms`` (downloading the missing ones in parallel), and how many were downloaded."""
    paths = [cache_path(cache_dir, hub, r) for r in rpms]
    missing = [(r, p) for r, p in zip(rpms, paths, strict=True) if not _present(p, r)]
    if missing:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            # list() re-raises the first failure; files already renamed into the cache stay valid.
            list(pool.map(lambda rp: hub.download(hub.file_url(rp[0].relpath), rp[1], expect_size=rp[0].size), missing))
    return paths, len(missing)


def _present(path: Path, rpm: RemoteRpm) -> bool:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    return rpm.size is None or size == rpm.size


def _live_files(repo_root: Path, release: str, channel: str) -> set[str]:
    names: set[str] = set()
    for repo in repolib.repo_dirs(repo_root, release, channel):
        generation = repolib.current_generation(repo)
        if generation is not None:
            names |= {Path(h).name for h in generation.hrefs()}
    return names


def publish_tag(
    hub: Hub,
    tag: str,
    repo_root: Path,
    release: str,
    channel: str,
    *,
    cache_dir: Path,
    key: gpg.SigningKey | None = None,
    sigkeys: Sequence[str] = (),
    keep_signatures: bool = False,
    workers: int = DEFAULT_WORKERS,
    dnf_check: bool = True,
    rpmv3: bool = False,
) -> TagPublishReport:
    """Publish the latest builds of ``tag`` into ``channel`` (see the module docstring)."""
    with step(f"list the latest builds of {tag}"):
        builds, rpms = tag_rpms(hub, tag, sigkeys)
    if not rpms:
        raise KojiError(f"tag {tag} has no builds to publish", hint="tag builds into it first")
    live = _live_files(repo_root, release, channel)
    report = TagPublishReport(tag, builds, len(rpms), 0, 0, 0.0, None, sum(1 for r in rpms if r.sigkey))
    if all(r.filename in live for r in rpms):
        report.skipped = sorted(r.filename for r in rpms)
        return report
    with step(f"download {len(rpms)} RPM(s) of {builds} build(s) from koji") as timing:
        paths, downloaded = fetch(hub, rpms, cache_dir, workers)
    report.downloaded, report.reused, report.download_seconds = downloaded, len(rpms) - downloaded, timing.seconds
    report.publish = publish.publish(
        paths,
        repo_root,
        release,
        channel,
        key=key,
        resign=not keep_signatures,
        dnf_check=dnf_check,
        rpmv3=rpmv3,
    )
    return report


@dataclass
class TagDiffReport:
    tag: str
    channel: str
    changes: list[DiffEntry]


def diff_tag(hub: Hub, tag: str, repo_root: Path, release: str, channel: str) -> TagDiffReport:
    """What publishing ``tag`` would change in ``channel``: live packages vs the tag's latest builds.

    ``removed`` lists what is live but no longer in the tag: a publish keeps it (publishing
    never deletes), so it shows what the tag and the channel disagree on.
    """
    _, rpms = tag_rpms(hub, tag)
    live: list[createrepo.PackageRecord] = []
    for repo in repolib.repo_dirs(repo_root, release, channel):
        generation = repolib.current_generation(repo)
        if generation is not None:
            live += generation.packages
    return TagDiffReport(tag, channel, evr.diff_packages(live, rpms))
