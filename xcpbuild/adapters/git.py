"""Every use of git (through GitPython) in xcpbuild, with its errors translated.

Upstreams are kept as bare mirrors under ``<cache>/git/``; tarballs are made
with ``git archive`` from a resolved commit; patches are checked and applied
with ``git apply`` (exact: offsets allowed, no fuzz) and regenerated with
``git format-patch``. GitPython exceptions never leave this module: they become
SourceError (upstream, refs, checkouts) or PatchError (apply).
"""

from __future__ import annotations

import difflib
import hashlib
import io
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from xcpbuild.adapters import owned, process
from xcpbuild.adapters.lazy import Lazy
from xcpbuild.errors import SourceError
from xcpbuild.log import get_logger

if TYPE_CHECKING:
    import git
else:  # GitPython is imported on first use: a reused build asks git only for its checkout's state
    git = Lazy("git")

log = get_logger("git")

# Never prompt for credentials: an unreachable or private URL must fail, not hang.
_NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false", "LC_ALL": "C"}
# Format-patch output that depends only on the commits: no commit hash, no git version,
# full blob ids (abbreviations grow with the repository), "[PATCH]" without numbers.
_FORMAT_PATCH_STABLE = ("--zero-commit", "--no-signature", "--no-numbered", "--full-index")


@dataclass(frozen=True)
class ApplyResult:
    """What ``git apply`` said: success, and its messages (offsets, errors)."""

    ok: bool
    output: str


def normalize_url(url_or_path: str) -> str:
    """A URL git understands: an existing local path becomes its absolute path."""
    if "://" not in url_or_path and not re.match(r"^[\w.-]+@[\w.-]+:", url_or_path):
        path = Path(url_or_path).expanduser()
        if not path.exists():
            raise SourceError(
                f"upstream {url_or_path} is neither a URL nor an existing path",
                hint="pass a git URL (https://, file://) or the path of a local clone with --upstream",
            )
        return str(path.resolve())
    return url_or_path


def mirror_path(cache_dir: Path, url: str) -> Path:
    """Where the mirror of ``url`` lives: a readable name plus a hash of the full URL."""
    parsed = urlparse(url)
    tail = Path(parsed.path or url).name.removesuffix(".git") or "repo"
    tail = re.sub(r"[^A-Za-z0-9._-]", "_", tail)
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return cache_dir / "git" / f"{tail}-{digest}.git"


def _first_line(exc: git.GitCommandError) -> str:
    text = str(exc.stderr or exc.stdout or exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("stderr:")]
    cleaned = [re.sub(r"^(stderr: )?'?(fatal|error): ", "", line).rstrip("'") for line in lines]
    return cleaned[0] if cleaned else "git failed"


_MIRROR_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _mirror_lock(path: Path) -> threading.Lock:
    """One lock per mirror: two probes of one package run at once, and git refs must not race."""
    with _LOCKS_GUARD:
        return _MIRROR_LOCKS.setdefault(path, threading.Lock())


def mirror(cache_dir: Path, url: str) -> Path:
    """Clone or update the cached mirror of ``url`` (one thread at a time per mirror)."""
    url = normalize_url(url)
    with _mirror_lock(mirror_path(cache_dir, url)):
        return _mirror(cache_dir, url)


def _mirror(cache_dir: Path, url: str) -> Path:
    """Clone ``url`` as a bare mirror in the cache, or bring an existing mirror up to date.

    A new clone is made in a temporary directory and renamed into place, so a
    failed clone leaves nothing behind. If updating an existing mirror fails
    (offline), the cached copy is used and a warning logged.
    """
    _warn_if_uncommitted(url)
    path = mirror_path(cache_dir, url)
    if (path / "HEAD").exists():
        try:
            git.Repo(path).git.fetch("--prune", "--tags", "--force", "origin", env=_NO_PROMPT)
        except git.GitCommandError as exc:
            log.warning("could not update the mirror of %s (%s); using the cached copy", url, _first_line(exc))
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with owned.tempdir(f".{path.name}", parent=path.parent) as scratch:
        _clone(url, scratch, path)
    return path


def _clone(url: str, scratch: Path, path: Path) -> None:
    try:
        git.Repo.clone_from(url, scratch / "repo.git", mirror=True, env=_NO_PROMPT)
        try:
            (scratch / "repo.git").rename(path)
        except OSError:
            if not (path / "HEAD").exists():  # not another process that cloned it first
                raise
    except git.GitCommandError as exc:
        raise SourceError(
            f"cannot clone {url}: {_first_line(exc)}",
            hint="check the URL and that it is reachable; --upstream PATH or file:// works offline",
        ) from exc


def _warn_if_uncommitted(url: str) -> None:
    """A local work tree with changes: say that only commits reach the mirror."""
    if "://" in url or not (Path(url) / ".git").exists():
        return
    try:
        dirty = git.Repo(url).is_dirty(untracked_files=False)
    except (git.InvalidGitRepositoryError, git.GitCommandError):
        return
    if dirty:
        log.warning("%s has uncommitted changes: they are not in the mirror (commit them to use them)", url)


def _open(path: Path) -> git.Repo:
    try:
        return git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise SourceError(f"{path} is not a git repository", hint="pass the path of a git checkout") from exc


def tags(repo_path: Path) -> list[str]:
    return sorted(t.name for t in _open(repo_path).tags)


def resolve(repo_path: Path, ref: str) -> str:
    """The commit ``ref`` (tag, branch or hash) names, or a SourceError suggesting close tags."""
    repo = _open(repo_path)
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}"))
    except git.GitCommandError as exc:
        close = difflib.get_close_matches(ref, tags(repo_path), n=3)
        hint = (
            f"did you mean {', '.join(close)}?" if close else "list the upstream's tags with `git ls-remote --tags URL`"
        )
        raise SourceError(f"unknown ref `{ref}` in {repo_path}", hint=hint) from exc


def commit_subject(repo_path: Path, commit: str) -> str:
    return str(_open(repo_path).commit(commit).summary)


def archive_tar(repo_path: Path, commit: str, prefix: str) -> bytes:
    """``git archive --format=tar`` of ``commit`` with ``prefix``: same commit, same bytes.

    git stamps every entry with the commit's time, so the tar depends only on the commit.
    """
    stream = io.BytesIO()
    try:
        _open(repo_path).git.archive(f"--prefix={prefix}", "--format=tar", commit, output_stream=stream)
    except git.GitCommandError as exc:
        raise SourceError(f"git archive of {commit} failed: {_first_line(exc)}") from exc
    return stream.getvalue()


def ensure_clean(checkout: Path) -> git.Repo:
    """The repository at ``checkout``, refusing a work tree with uncommitted changes."""
    repo = _open(checkout)
    if repo.bare:
        raise SourceError(f"{checkout} is a bare repository", hint="pass a checkout with a work tree")
    if repo.is_dirty(untracked_files=False):
        changed = sorted(
            {str(d.a_path) for d in repo.index.diff(None)} | {str(d.a_path) for d in repo.index.diff("HEAD")}
        )
        shown = ", ".join(changed[:3]) + ("..." if len(changed) > 3 else "")
        raise SourceError(
            f"checkout {checkout} has uncommitted changes ({shown})",
            hint="commit or stash them (`git stash`), then run the command again",
        )
    return repo


def is_work_tree_root(path: Path) -> bool:
    return (path / ".git").exists()


def checkout_state(path: Path) -> tuple[str, bool] | None:
    """The commit checked out at ``path`` and whether the work tree differs from it (None: not a checkout).

    Two plain git commands, not GitPython: this is on the path of every reused build.
    """
    if not is_work_tree_root(path):
        return None
    head = process.run(["git", "-C", path, "rev-parse", "--verify", "--quiet", "HEAD"], env=_NO_PROMPT, check=False)
    if not head.ok:
        return None  # a repository with no commit yet
    status = process.run(
        ["git", "-C", path, "status", "--porcelain", "--untracked-files=all"], env=_NO_PROMPT, check=False
    )
    if not status.ok:
        raise SourceError(f"git status failed in {path}: {status.stderr.strip()}", hint="is it a git checkout?")
    return head.stdout.strip(), bool(status.stdout.strip())


def format_patches(checkout: Path, base: str, branch: str, context: int) -> list[str]:
    """One ``git format-patch`` text per commit of ``base..branch``, oldest first, in stable form."""
    repo = ensure_clean(checkout)
    resolve(checkout, branch)
    base_commit = resolve(checkout, base)
    try:
        commits = repo.git.rev_list("--reverse", "--no-merges", f"{base_commit}..{branch}").split()
        return [
            str(repo.git.format_patch(*_FORMAT_PATCH_STABLE, f"-U{context}", "-M", "--stdout", "-1", commit)) + "\n"
            for commit in commits
        ]
    except git.GitCommandError as exc:
        raise SourceError(f"git format-patch on {checkout} failed: {_first_line(exc)}") from exc


def _apply_env(tree: Path) -> dict[str, str]:
    # Stop git from finding a repository above ``tree`` (e.g. _work/ inside the project
    # checkout): paths in the patch are then relative to ``tree`` itself.
    return {"GIT_CEILING_DIRECTORIES": str(tree.resolve().parent), **_NO_PROMPT}


def apply(tree: Path, patch: Path, *, check: bool = False, reverse: bool = False) -> ApplyResult:
    """``git apply -v`` of ``patch`` in ``tree`` (a plain directory or a work tree).

    Exact: hunks may move (offset) but every context line must match (no fuzz).
    A patch is all or nothing: on failure no file of ``tree`` has changed.
    """
    args = ["-v", "--whitespace=nowarn", "-p1"]
    if check:
        args.append("--check")
    if reverse:
        args.append("--reverse")
    status, stdout, stderr = git.Git(str(tree)).execute(
        ["git", "apply", *args, str(patch.resolve())],
        with_extended_output=True,
        with_exceptions=False,
        env=_apply_env(tree),
    )
    return ApplyResult(ok=status == 0, output=f"{stdout}\n{stderr}".strip())


def clean_head(checkout: Path, remote: str = "origin") -> tuple[str, str]:
    """(commit of HEAD, URL of ``remote``) of a checkout with no uncommitted changes.

    What a koji build from SCM needs: the exact commit a hub can fetch. A dirty work tree is
    refused (SourceError), since the hub would build something other than what the user sees.
    """
    repo = ensure_clean(checkout)
    try:
        url = repo.remotes[remote].url
    except (IndexError, KeyError) as exc:
        raise SourceError(
            f"checkout {checkout} has no remote {remote!r}", hint="add the package repository as that remote"
        ) from exc
    return repo.head.commit.hexsha, url
