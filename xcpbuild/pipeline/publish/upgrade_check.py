"""The upgrade check before a swap: do hosts that run the live packages survive the staged update?

Installing the new packages into an empty root (``publish._dnf_verdict``)
proves they install; it does not prove an existing host can upgrade. So, before
anything goes live:

1. the live packages of the channels a host uses (the published channel by
   default, or those named, e.g. base + updates) are resolved from the live
   repositories into a fresh root, and upgraded by dnf's resolver to the staged
   metadata (``best``: the newest staged version of each, or a reason);
2. repoclosure, as ``dnf repoclosure --newest --check staged`` does it: every
   newest package of the staged metadata has its dependencies within the
   newest packages of the staged and other live repositories.

Both run in the dnf process of the publish's install check
(``adapters/dnf_publish_helper.py``), started when the publish begins
(``request`` is all it needs then): dnf's start-up and the live packages'
resolving and recording happen while the staged repository is built; only the
upgrade to the staged metadata waits for it (``judge`` reads the answer).

Recording the live packages (``rpm --justdb``) costs seconds for thousands, so
a passing check leaves its installroot in the staging dir, and ``adopt`` moves
it to ``<repo dir>/.upgrade-roots/<channels>`` once the generation is live. The
next check copies it and applies only the difference to the freshly resolved
live set, and uses it only if dnf then reads exactly that set from it (else it
records a fresh root, as without a cache). Replacing it is two renames under
the publish lock; a crash between them leaves no root (a fresh one next time)
and an ``.old-*`` dir that the next check removes. The root's dir also keeps
libsolv's cache of the metadata the check loaded, the staged repository's under
its live id: the next check's live metadata, which libdnf loads from it when
(and only when) its ``repomd.xml`` is the same.

Either failing raises VerifyError naming the package and the unresolved
dependency as dnf said it; the caller has not swapped anything yet.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xcpbuild.adapters import dnf
from xcpbuild.adapters.createrepo import PackageRecord
from xcpbuild.errors import VerifyError
from xcpbuild.log import get_logger
from xcpbuild.pipeline.publish import evr
from xcpbuild.pipeline.publish import repo as repolib

log = get_logger("upgrade")

HINT = "nothing was published; the live repository is unchanged"
ROOTS = ".upgrade-roots"  # in the binary repo dir, next to .generations
SAVED = "upgrade-root"  # in the staging dir, then in the generation dir until adopted


@dataclass
class UpgradeCheck:
    installed: list[str] = field(default_factory=list)  # what the live packages installed as
    upgraded: list[str] = field(default_factory=list)  # what they became
    note: str = ""  # why the upgrade part did not run
    root: str = "fresh"  # how the live packages were recorded (fresh, or a reused root)
    cached: tuple[str, ...] = ()  # the live repositories whose metadata came from the kept solv cache
    cache_key: str = ""  # the name under ROOTS of the root this check saved ("" if none)


def _live_names(repo: repolib.RepoDir) -> list[str]:
    """The newest binary package of each name the repo dir serves now."""
    generation = repolib.current_generation(repo)
    newest: dict[tuple[str, str], PackageRecord] = {}
    for package in generation.packages if generation else []:
        key = (package.name, package.arch)
        if key[1] != "src" and (key not in newest or evr.evr_compare(package, newest[key]) > 0):
            newest[key] = package
    return sorted(f"{p.name}-{p.version}-{p.release}.{p.arch}" for p in newest.values())


def _root_and_channel(binary: repolib.RepoDir, release: str) -> tuple[Path, str]:
    """The tree root and channel of ``ROOT/<major>/<X.Y>/<channel>/x86_64``."""
    channel_dir = binary.path.parent
    root = channel_dir.parent.parent.parent
    if repolib.repo_dirs(root, release, channel_dir.name)[0].path != binary.path:
        raise VerifyError(f"{binary.path} is not a binary repo dir of release {release}")
    return root, channel_dir.name


@dataclass(frozen=True)
class Request:
    """One publish's upgrade check, decided before anything is staged."""

    channels: list[str]
    key: str  # the name under ROOTS of the root this check reads and saves
    dnf: dnf.UpgradeRequest


def request(
    binary: repolib.RepoDir, release: str, *, upgrade_from: Sequence[str] | None = None, save: Path | None = None
) -> Request:
    """What the check of the binary repo dir ``binary`` asks dnf (the caller holds the publish lock).

    ``save``: where a passing check leaves its recorded root for ``adopt`` (a path not yet existing).
    """
    repo_root, channel = _root_and_channel(binary, release)
    roots = binary.path / ROOTS
    _sweep(roots)
    channels = list(dict.fromkeys(upgrade_from or [channel]))
    live: dict[str, repolib.RepoDir] = {}
    for name in dict.fromkeys([channel, *channels, "base", "updates"]):
        binary, _ = repolib.repo_dirs(repo_root, release, name)
        if repolib.current_number(binary) is not None:
            live[name] = binary
    others = tuple(dnf.Repo(f"live-{name}", d.path) for name, d in live.items() if name != channel)
    names = tuple(n for name in channels if name in live for n in _live_names(live[name]))
    live_repos = tuple(dnf.Repo(f"live-{name}", d.path) for name, d in live.items())
    key = "+".join(sorted(channels))
    cache = roots / key if (roots / key).is_dir() else None
    asked = dnf.UpgradeRequest(live_repos, others, names, cache=cache, save=save, staged_as=f"live-{channel}")
    return Request(channels, key, asked)


def judge(asked: Request, found: dnf.UpgradeCheckResult) -> UpgradeCheck:
    """What dnf's answer means for the publish: VerifyError for an update that breaks hosts."""
    names, channels = asked.dnf.packages, asked.channels
    log.debug(
        "upgrade check of %d live package(s) of %s: %s root, metadata of %s from the kept cache; %s", len(names),
        ", ".join(channels), found.root, ", ".join(found.cached) or "none",
        ", ".join(f"{k} {v:.2f}s" for k, v in found.timings.items()),
    )  # fmt: skip
    result = UpgradeCheck(root=found.root, cached=found.cached)
    save = asked.dnf.save
    if save is not None and (save / "manifest.json").exists():
        result.cache_key = asked.key
    if not names:
        result.note = f"nothing live in {', '.join(channels)} to upgrade from"
    elif found.problem == "live-install":
        # A live repository already broken must not block the publish that repairs it.
        result.note = f"the live packages do not resolve: {found.detail}"
        log.warning("upgrade check skipped: %s", result.note)
    elif found.problem == "upgrade":
        raise VerifyError(f"dnf cannot upgrade the live packages to the staged ones: {found.detail}", hint=HINT)
    result.installed, result.upgraded = found.before, found.after
    if found.unresolved:
        first = found.unresolved[0]
        more = f" (and {len(found.unresolved) - 1} more package(s))" if len(found.unresolved) > 1 else ""
        raise VerifyError(
            f"repoclosure: {first.package} has unresolved dependencies: {', '.join(first.requires)}{more}", hint=HINT
        )
    return result


def _sweep(roots: Path) -> None:
    """Remove what an interrupted ``adopt`` left (the caller holds the publish lock)."""
    for leftover in roots.glob(".old-*") if roots.is_dir() else []:
        shutil.rmtree(leftover, ignore_errors=True)


def adopt(binary: repolib.RepoDir, holder: Path, key: str) -> None:
    """Make the root a passing check saved in ``holder`` (the new live generation's dir) the cached one."""
    saved = holder / SAVED
    if not key or not (saved / "manifest.json").exists():
        shutil.rmtree(saved, ignore_errors=True)
        return
    roots = binary.path / ROOTS
    target, old = roots / key, roots / f".old-{uuid.uuid4().hex[:8]}"
    try:
        roots.mkdir(exist_ok=True)
        if target.exists():
            target.rename(old)
        saved.rename(target)
    except OSError as exc:  # the generation is live already: a root not kept only costs the next check time
        log.warning("the upgrade check's root was not kept: %s", exc)
        shutil.rmtree(saved, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
