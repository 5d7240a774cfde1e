"""A channel's history of generations: roll back to the previous one, or diff two.

Rollback makes a *new* generation whose metadata is the previous generation's
(hard links, so ``repomd.xml`` and its signature stay byte-identical) plus the
rolled-back generation's metadata files for clients that cached its
``repomd.xml``; it is swapped in like a publish. Its parent is the target's
parent, so rolling back twice goes two steps back rather than toggling.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.adapters import createrepo
from xcpbuild.errors import PublishError
from xcpbuild.log import get_logger
from xcpbuild.pipeline.publish import repo as repolib
from xcpbuild.pipeline.publish import space
from xcpbuild.pipeline.publish.evr import DiffEntry, diff_packages
from xcpbuild.pipeline.publish.repo import Generation, RepoDir

log = get_logger("history")


@dataclass
class RollbackReport:
    path: Path
    from_generation: int
    to_generation: int
    new_generation: int
    changes: list[DiffEntry]


def rollback(repo_root: Path, release: str, channel: str, kind: str = "x86_64") -> RollbackReport:
    """Serve the generation before the live one again (PublishError if there is none)."""
    repo = _pick(repo_root, release, channel, kind)
    with repolib.locked(repo_root), space.guard([repo_root], space.MiB):
        repolib.recover(repo)
        current = repolib.current_generation(repo)
        if current is None:
            raise PublishError(f"nothing is published in {repo.path}", hint="there is nothing to roll back")
        if current.parent is None or not repolib.generation_dir_ok(repo, current.parent):
            raise PublishError(
                f"{repo.path} has no previous generation to roll back to",
                hint="only the newest generations are kept; publish the wanted packages again instead",
            )
        target = repolib.load_generation(repo, current.parent)
        staging = repo.path / f"{repolib.STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            (staging / "repodata").mkdir(parents=True)
            target_md = repo.generation_dir(target.number) / "repodata"
            current_md = repo.generation_dir(current.number) / "repodata"
            names = [p.name for p in target_md.iterdir()]
            repolib.link_previous_metadata(target_md, staging / "repodata", names)
            cached = [Path(e.href).name for e in createrepo.read_repomd(current_md)]
            repolib.link_previous_metadata(current_md, staging / "repodata", cached)
            problems = createrepo.check_repo(_view(staging, repo))
            if problems:
                raise PublishError(f"generation {target.number} is no longer complete: {problems[0]}")
            number = max(repolib.generation_numbers(repo)) + 1
            new = Generation(number, target.parent, "rollback", target.packages, target.identity, time.time())
            repolib.write_generation(staging, new)
            staging.rename(repo.generation_dir(number))
            repolib.remember_generation(repo.generation_dir(number), new)
            repolib.fsync_dir(repo.generations)
            repolib.swap(repo, number)
        finally:
            _cleanup_view(repo)
            shutil.rmtree(staging, ignore_errors=True)
        repolib.prune(repo)
    return RollbackReport(
        repo.path, current.number, target.number, number, diff_packages(current.packages, target.packages)
    )


def _pick(repo_root: Path, release: str, channel: str, kind: str) -> RepoDir:
    repolib.check_root(repo_root)
    binary, source = repolib.repo_dirs(repo_root, release, channel)
    if kind not in ("x86_64", "Source"):
        raise PublishError(f"unknown repo dir {kind!r}: use x86_64 or Source")
    return binary if kind == "x86_64" else source


def _view(staging: Path, repo: RepoDir) -> Path:
    """A directory showing ``staging/repodata`` next to the live packages, for checking."""
    view = repo.path / f"{repolib.STAGING_PREFIX}view"
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir()
    (view / "repodata").symlink_to(Path("..", staging.name, "repodata"))
    (view / repo.packages).symlink_to(Path("..", repo.packages))
    return view


def _cleanup_view(repo: RepoDir) -> None:
    shutil.rmtree(repo.path / f"{repolib.STAGING_PREFIX}view", ignore_errors=True)


@dataclass
class DiffReport:
    path: Path
    old_generation: int | None
    new_generation: int
    changes: list[DiffEntry]


def diff(
    repo_root: Path,
    release: str,
    channel: str,
    kind: str = "x86_64",
    *,
    old: int | None = None,
    new: int | None = None,
) -> DiffReport:
    """What generation ``new`` (default: live) added, removed or upgraded against ``old``
    (default: its parent, i.e. what the last publish did)."""
    repo = _pick(repo_root, release, channel, kind)
    number = new if new is not None else repolib.current_number(repo)
    if number is None:
        raise PublishError(f"nothing is published in {repo.path}")
    after = _load(repo, number)
    before_number = old if old is not None else after.parent
    before = _load(repo, before_number).packages if before_number is not None else []
    return DiffReport(repo.path, before_number, number, diff_packages(before, after.packages))


def _load(repo: RepoDir, number: int) -> Generation:
    if not repolib.generation_dir_ok(repo, number):
        raise PublishError(f"generation {number} of {repo.path} does not exist (it may have been pruned)")
    return repolib.load_generation(repo, number)
