"""Patch series: apply exactly, report health against upstream refs, regenerate from commits.

Every function takes a resolved package (``package.Package``): the patches of
xcpbuild's own definitions come from ``patches/NAME/series``, those of a package
repository from its spec's PatchNNNN lines, in spec order, with ``%if`` blocks
resolved by the ``--define``s it was resolved with.

- ``apply_series`` applies the patches in order with ``git apply``
  (offsets allowed, no fuzz) to a copy of the tree, and swaps the copy in only
  when every patch applied: a failure leaves the tree exactly as it was.
- ``check`` says, for each ref and each patch, whether it applies, applies with
  an offset, needs fuzz, conflicts, or is already upstream. Patches are checked
  in series order on top of the ones before them, as a build would apply them.
- ``refresh`` rewrites the series from the commits of a branch, in stable
  ``git format-patch`` form, keeping existing file names for the same subjects.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.adapters import git, gnupatch, owned
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError, PatchError, SourceError
from xcpbuild.log import get_logger, step
from xcpbuild.model.package import PackageDef, read_series
from xcpbuild.pipeline.sources import hunks
from xcpbuild.pipeline.sources.package import Package, RepoPackage

log = get_logger("patch")


@dataclass(frozen=True)
class PatchHealth:
    """One patch against one upstream ref."""

    ref: str
    commit: str
    patch: str
    status: hunks.PatchStatus
    detail: str


@dataclass(frozen=True)
class RefreshResult:
    series: list[str]  # the new series, in order (every file in it was rewritten)
    removed: list[str]  # patch files no series lists any more


@dataclass(frozen=True)
class _Loaded:
    path: Path
    parsed: hunks.ParsedPatch


def series_for(settings: Settings, pkg: PackageDef, target: str = "local") -> list[Path]:
    """A definition's patch files for ``target`` in order; a malformed series file is a PatchError."""
    pin = pkg.pin(target)
    try:
        return read_series(settings.patches_dir, pkg.name, pin.series)
    except ConfigError as exc:
        raise PatchError(exc.message, hint=exc.hint) from exc


def mirror(settings: Settings, package: Package, upstream: str | None = None) -> Path:
    """The cached mirror of the package's upstream (``--upstream`` wins over what the package says)."""
    url = upstream or package.upstream_url
    if not url:
        said = "its spec names no URL:, gitsha() or upstream" if isinstance(package, RepoPackage) else "no `upstream`"
        raise ConfigError(
            f"package {package.name} has no upstream git repository ({said})",
            hint=f"pass --upstream URL_OR_PATH, or add it to {package.where}",
        )
    with step(f"mirror {url}"):
        return git.mirror(settings.cache_dir, url)


def _load(patches: list[Path]) -> list[_Loaded]:
    loaded = []
    for path in patches:
        try:
            loaded.append(_Loaded(path, hunks.parse_patch(path.read_text(errors="replace"))))
        except hunks.MalformedPatch as exc:
            raise PatchError(
                f"{path.name} is not a patch: {exc}",
                hint=f"regenerate it with `xcpbuild patch refresh` or fix {path}",
            ) from exc
    return loaded


def apply_series(settings: Settings, pkg: Package, source_dir: Path) -> list[str]:
    """Apply the package's patches to ``source_dir``; returns the applied patch names.

    All or nothing: the patches go onto a copy beside ``source_dir`` which replaces
    it only when all applied. A git checkout with uncommitted changes is refused.
    """
    source_dir = source_dir.resolve()
    if not source_dir.is_dir():
        raise SourceError(f"source directory {source_dir} does not exist", hint="pass the unpacked upstream tree")
    if git.is_work_tree_root(source_dir):
        git.ensure_clean(source_dir)
    loaded = _load(list(pkg.patch_files))
    if not loaded:
        log.info("%s has no patches for target %s", pkg.name, pkg.target.name)
        return []
    with ExitStack() as stack:
        try:
            scratch = stack.enter_context(owned.tempdir(f".{source_dir.name}.patching", parent=source_dir.parent))
        except OSError as exc:
            raise SourceError(
                f"cannot make a working copy beside {source_dir}: {exc.strerror}",
                hint="patches are applied to a copy in the same directory; make that directory writable",
            ) from exc
        work = scratch / "tree"
        try:
            shutil.copytree(source_dir, work, symlinks=True)
        except (OSError, shutil.Error) as exc:
            raise SourceError(f"cannot copy {source_dir} to apply the series: {exc}") from exc
        for index, patch in enumerate(loaded, start=1):
            with step(f"apply {patch.path.name}"):
                result = git.apply(work, patch.path)
                if not result.ok:
                    applied_already = git.apply(work, patch.path, check=True, reverse=True).ok
                    raise PatchError(
                        f"patch {index}/{len(loaded)} {patch.path.name} does not apply: "
                        f"{hunks.failure_detail(patch.parsed, result.output)}"
                        f"{' (it looks already applied)' if applied_already else ''}; {source_dir} is unchanged",
                        hint=f"see every patch's state with `xcpbuild patch check {pkg.cli_name} --ref REF`",
                    )
        # Swap: two renames in the same directory, then drop the original.
        source_dir.rename(scratch / "original")
        work.rename(source_dir)
    return [p.path.name for p in loaded]


def _extract(repo: Path, commit: str, into: Path) -> Path:
    tar_bytes = git.archive_tar(repo, commit, prefix="tree/")
    with tempfile.TemporaryFile() as handle:
        handle.write(tar_bytes)
        handle.seek(0)
        with tarfile.open(fileobj=handle, mode="r:") as tar:
            tar.extractall(into, filter="data")
    return into / "tree"


def classify_in_tree(tree: Path, patch: Path, parsed: hunks.ParsedPatch) -> hunks.Verdict:
    """Ask git apply (exact, then reversed) and GNU patch (fuzz 2) about ``patch`` in ``tree``."""
    exact = git.apply(tree, patch, check=True)
    reverse_ok = False if exact.ok else git.apply(tree, patch, check=True, reverse=True).ok
    fuzzy_ok, fuzzy_report = (True, "") if exact.ok or reverse_ok else gnupatch.patch(tree, patch)
    return hunks.classify(
        parsed,
        exact_ok=exact.ok,
        exact_report=exact.output,
        reverse_ok=reverse_ok,
        fuzzy_ok=fuzzy_ok,
        fuzzy_report=fuzzy_report,
    )


def check(
    settings: Settings,
    pkg: Package,
    refs: list[str],
    upstream: str | None = None,
) -> list[PatchHealth]:
    """The health of every patch of the package against every ref, in order."""
    loaded = _load(list(pkg.patch_files))
    repo = mirror(settings, pkg, upstream)
    commits = [(ref, git.resolve(repo, ref)) for ref in refs]  # every ref resolves before any work
    report: list[PatchHealth] = []
    for ref, commit in commits:
        with step(f"check {len(loaded)} patch(es) against {ref}"), owned.tempdir("patch-check") as tmp:
            tree = _extract(repo, commit, tmp)
            for patch in loaded:
                verdict = classify_in_tree(tree, patch.path, patch.parsed)
                report.append(PatchHealth(ref, commit, patch.path.name, verdict.status, verdict.detail))
                # Later patches are checked on top of this one, as a build would apply them.
                if hunks.is_healthy(verdict.status):
                    git.apply(tree, patch.path)
                elif verdict.status == hunks.FUZZ:
                    gnupatch.patch(tree, patch.path, dry_run=False)
    return report


def _slug(subject: str, limit: int = 48) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", subject.lower()).strip("-").split("-")
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > limit and slug:
            break
        slug = candidate
    return slug or "change"


def patch_file_name(pkg: PackageDef, version: str, subject: str) -> str:
    """XCP-ng style: ``NAME-VERSION-short-description.XCP-ng.patch``."""
    return f"{pkg.name}-{version}-{_slug(subject)}.XCP-ng.patch"


def _leading_comments(series_text: str) -> str:
    """The comment lines heading a series file, kept when it is rewritten."""
    kept = []
    for line in series_text.splitlines():
        if not line.startswith("#"):
            break
        kept.append(line + "\n")
    return "".join(kept)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def refresh(
    settings: Settings,
    pkg: PackageDef,
    branch: str,
    checkout: Path,
    *,
    base: str | None = None,
    target: str = "local",
    context: int = 3,
) -> RefreshResult:
    """Rewrite the target's series from the commits ``base..branch`` of ``checkout``.

    ``base`` defaults to the target's pinned ref. A patch whose subject matches an
    existing one keeps its file name; patch files dropped from the series are removed.
    """
    pin = pkg.pin(target)
    if not pin.series:
        raise PatchError(
            f'target {target} of {pkg.name} has no series (series = "")',
            hint="refresh the series of a target that has one (--target)",
        )
    old_patches = series_for(settings, pkg, target)
    base_ref = base or pin.ref
    with step(f"format-patch {base_ref}..{branch} in {checkout}"):
        texts = git.format_patches(checkout, base_ref, branch, context)
    if not texts:
        raise PatchError(
            f"branch {branch} has no commits on top of {base_ref} in {checkout}",
            hint="commit the changes on the branch, or pass --base with the ref the branch started from",
        )
    by_subject: dict[str, str] = {}
    for path in old_patches:
        by_subject.setdefault(hunks.parse_subject(path.read_text(errors="replace")), path.name)
    names: list[str] = []
    for text in texts:
        subject = hunks.parse_subject(text)
        name = by_subject.get(subject) or patch_file_name(pkg, pin.version, subject)
        stem, number = name.removesuffix(".XCP-ng.patch"), 2
        while name in names:
            name, number = f"{stem}-{number}.XCP-ng.patch", number + 1
        names.append(name)
    # Files other targets' series still list stay (read them all before writing anything).
    keep = set(names)
    for other in sorted({p.series for p in pkg.targets.values() if p.series and p.series != pin.series}):
        try:
            keep.update(path.name for path in read_series(settings.patches_dir, pkg.name, other))
        except ConfigError as exc:
            raise PatchError(exc.message, hint=exc.hint) from exc
    directory = settings.patches_dir / pkg.name
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in zip(names, texts, strict=True):
        _write_text(directory / name, text)
    series_path = directory / pin.series
    header = _leading_comments(series_path.read_text()) if series_path.exists() else ""
    _write_text(series_path, header + "".join(f"{name}\n" for name in names))
    removed = []
    for path in old_patches:
        if path.name not in keep:
            path.unlink()
            removed.append(path.name)
    return RefreshResult(series=names, removed=removed)
