"""Publish RPMs into an XCP-ng yum repository safely, and promote between channels.

A publish, in order (each phase is a named crash point, see ``crashpoints``):

1. check the inputs (readable RPMs of a publishable arch, a real key, a known
   channel) before touching anything;
2. take the repository lock, clean up what an interrupted publisher left;
3. copy the new RPMs into a staging directory, sign the copies (rpmsign) and
   verify every signature against the exported public key only;
4. build metadata in staging, reusing the live generation's records for
   unchanged packages, link in the previous generation's metadata files,
   sign ``repomd.xml`` (detached ``repomd.xml.asc``) and verify that signature;
5. check the staged repo: every file repomd names matches its checksum, and a
   real dnf (gpgcheck and repo_gpgcheck on) installs the new packages from it;
6. move the signed RPMs into ``Packages/``, the staged metadata into a new
   generation, and swap ``repodata`` atomically (see ``repo``); prune old
   generations.

Any failure before step 6 leaves the live repository exactly as it was.
Re-publishing a NEVRA with the same content (same header digest, which signing
does not change) is a no-op; with different content it is refused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from xcpbuild.adapters import createrepo, dnf, gpg, rpmsign
from xcpbuild.adapters.createrepo import PackageRecord
from xcpbuild.errors import PublishError, RpmError, SigningError, UsageError
from xcpbuild.log import get_logger, step
from xcpbuild.pipeline import crashpoints
from xcpbuild.pipeline import repo as repolib
from xcpbuild.pipeline.repo import Generation, RepoDir

log = get_logger("publish")

BINARY_ARCHES = ("x86_64", "noarch")


@dataclass
class RepoDirReport:
    """What a publish did to one repo dir (x86_64 or Source)."""

    path: Path
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    generation: int | None = None
    previous_generation: int | None = None
    metadata_seconds: float = 0.0
    packages_read: int = 0
    packages_reused: int = 0
    dnf_installed: list[str] = field(default_factory=list)


@dataclass
class PublishReport:
    repo_root: Path
    release: str
    channel: str
    signed_by: str | None
    repos: list[RepoDirReport] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return any(r.added for r in self.repos)


@dataclass
class _Input:
    path: Path
    record: PackageRecord
    filename: str
    identity: str = ""
    staged: Path | None = None


@dataclass
class _Plan:
    repo: RepoDir
    inputs: list[_Input]
    current: Generation | None
    report: RepoDirReport
    staging: Path | None = None
    new_generation: Generation | None = None


def _canonical_name(record: PackageRecord) -> str:
    return f"{record.name}-{record.version}-{record.release}.{record.arch}.rpm"


def _read_inputs(rpms: Sequence[Path]) -> tuple[list[_Input], list[_Input]]:
    """(binary, source) inputs; RpmError/UsageError on anything unpublishable."""
    if not rpms:
        raise UsageError("no RPM files given")
    binary: list[_Input] = []
    source: list[_Input] = []
    for path in rpms:
        if not path.is_file():
            raise RpmError(f"{path} does not exist or is not a file")
        record = createrepo.read_package(path)
        item = _Input(path, record, _canonical_name(record))
        if record.arch == "src":
            source.append(item)
        elif record.arch in BINARY_ARCHES:
            binary.append(item)
        else:
            raise RpmError(
                f"{path.name} is for arch {record.arch}; XCP-ng repositories carry x86_64, noarch and src",
                hint="build for x86_64 (or noarch) and publish that",
            )
    for path, digest in rpmsign.header_digest([i.path for i in binary + source]).items():
        for item in binary + source:
            if item.path == path:
                item.identity = digest
    return binary, source


def _dedupe(plan: _Plan) -> None:
    """Drop inputs already published with the same content; refuse changed content."""
    published: dict[str, str] = {}
    if plan.current is not None:
        for pkg in plan.current.packages:
            href = str(pkg["href"])
            published[Path(href).name] = plan.current.identity.get(href, "")
    fresh: dict[str, _Input] = {}
    for item in plan.inputs:
        if item.filename in fresh:
            if fresh[item.filename].identity != item.identity:
                raise PublishError(f"two different packages named {item.filename} were given", hint="publish one")
            continue
        known = published.get(item.filename)
        if known is None:
            fresh[item.filename] = item
        elif known == item.identity:
            plan.report.unchanged.append(item.record.nevra)
        else:
            raise PublishError(
                f"{item.record.nevra} is already published in {plan.repo.path} with different content",
                hint="a published NEVRA never changes: bump the release and build again",
            )
    plan.inputs = list(fresh.values())


def _stage(plan: _Plan) -> Path:
    staging = plan.repo.path / f"{repolib.STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (staging / plan.repo.packages).mkdir(parents=True)
    for item in plan.inputs:
        item.staged = staging / plan.repo.packages / item.filename
        shutil.copyfile(item.path, item.staged)
    return staging


def _build_metadata(plan: _Plan, key: gpg.SigningKey | None, public_key: Path | None) -> None:
    assert plan.staging is not None
    staged_pkgs = plan.staging / plan.repo.packages
    new_names = {item.filename for item in plan.inputs}
    current = plan.current
    old_hrefs = current.hrefs() if current else []
    # The staged repo sees the live packages through symlinks, so dnf and the
    # checksum check read exactly the files the live repo will serve.
    for href in old_hrefs:
        name = Path(href).name
        if name not in new_names:
            (staged_pkgs / name).symlink_to(Path("..", "..", plan.repo.packages, name))
    hrefs = sorted({*old_hrefs, *(f"{plan.repo.packages}/{n}" for n in new_names)})
    previous = plan.repo.generation_dir(current.number) / "repodata" if current else None
    stats: dict[str, createrepo.StatKey] = {}
    if current:
        for pkg in current.packages:
            raw = pkg.get("stat")
            if isinstance(raw, list) and len(raw) == 4:
                stats[str(pkg["href"])] = (int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]))
    started = time.monotonic()
    with step(f"metadata for {len(hrefs)} packages in {plan.repo.kind}"):
        result = createrepo.build_repodata(
            plan.staging, hrefs, plan.staging / "repodata", previous=previous, previous_stats=stats
        )
    plan.report.metadata_seconds = time.monotonic() - started
    plan.report.packages_read, plan.report.packages_reused = result.read, result.reused
    crashpoints.reach("metadata")
    if previous is not None:
        names = [Path(e.href).name for e in createrepo.read_repomd(previous)]
        repolib.link_previous_metadata(previous, plan.staging / "repodata", names)
    if key is not None and public_key is not None:
        repomd = plan.staging / "repodata" / "repomd.xml"
        signature = gpg.detach_sign(key, repomd, repomd.with_name("repomd.xml.asc"))
        gpg.verify_detached(public_key, repomd, signature)
    crashpoints.reach("repomd-signed")
    identity = dict(current.identity) if current else {}
    identity.update({f"{plan.repo.packages}/{item.filename}": item.identity for item in plan.inputs})
    plan.new_generation = Generation(
        number=max([0, *repolib.generation_numbers(plan.repo)]) + 1,
        parent=current.number if current else None,
        action="publish",
        packages=[asdict(r) for r in result.packages],
        identity={h: identity[h] for h in hrefs if h in identity},
        created=time.time(),
    )


def _check_staged(plan: _Plan, public_key: Path | None, release: str, extra: Sequence[dnf.Repo]) -> None:
    assert plan.staging is not None
    new_hrefs = [f"{plan.repo.packages}/{item.filename}" for item in plan.inputs]
    problems = createrepo.check_repo(plan.staging, new_hrefs)
    if problems:
        raise PublishError(f"the staged repository is inconsistent: {problems[0]}")
    crashpoints.reach("checked")
    if plan.repo.packages != "Packages" or not plan.inputs:
        return
    # One dnf transaction installs one version of a name: check the newest of each.
    newest: dict[tuple[str, str], PackageRecord] = {}
    for item in plan.inputs:
        key = (item.record.name, item.record.arch)
        if key not in newest or repolib.evr_compare(asdict(item.record), asdict(newest[key])) > 0:
            newest[key] = item.record
    targets = sorted(record.nevra for record in newest.values())
    with step(f"dnf installs {len(targets)} new package(s) from the staged repository"):
        result = dnf.install([dnf.Repo("staged", plan.staging), *extra], targets, public_key, release)
    plan.report.dnf_installed = result.installed
    crashpoints.reach("dnf-checked")


def _go_live(plan: _Plan) -> None:
    """Place the packages, then swap the metadata in (the only step that changes the live repo)."""
    assert plan.staging is not None and plan.new_generation is not None
    plan.repo.packages_dir.mkdir(parents=True, exist_ok=True)
    placed: dict[str, createrepo.StatKey] = {}
    for item in plan.inputs:
        assert item.staged is not None
        target = plan.repo.packages_dir / item.filename
        item.staged.replace(target)
        placed[f"{plan.repo.packages}/{item.filename}"] = createrepo.stat_key(target)
        crashpoints.reach("placed")
    repolib.fsync_dir(plan.repo.packages_dir)
    # Record the stat keys the placed files have now (rename changed their ctime).
    for pkg in plan.new_generation.packages:
        if pkg["href"] in placed:
            pkg["stat"] = list(placed[str(pkg["href"])])
    shutil.rmtree(plan.staging / plan.repo.packages)
    repolib.write_generation(plan.staging, plan.new_generation)
    plan.repo.generations.mkdir(exist_ok=True)
    plan.staging.rename(plan.repo.generation_dir(plan.new_generation.number))
    repolib.fsync_dir(plan.repo.generations)
    crashpoints.reach("generation")
    repolib.swap(plan.repo, plan.new_generation.number)
    crashpoints.reach("swapped")
    plan.report.generation = plan.new_generation.number
    plan.staging = None


def _resolve_key(
    sign_key: str | None, gnupg_home: Path | None, workdir: Path
) -> tuple[gpg.SigningKey | None, Path | None]:
    if sign_key is None:
        return None, None
    key = gpg.find_secret_key(sign_key, gnupg_home)
    return key, gpg.export_public_key(key, workdir / "signing-key.asc")


def _extra_repos(root: Path, release: str, channel: str) -> list[dnf.Repo]:
    """Live channels that the new packages may depend on (base, updates), for the dnf check."""
    repos = []
    for other in ("base", "updates"):
        if other == channel:
            continue
        binary, _ = repolib.repo_dirs(root, release, other)
        if repolib.current_number(binary) is not None:
            repos.append(dnf.Repo(f"live-{other}", binary.path))
    return repos


def publish(  # noqa: PLR0917 (the release pipeline calls it positionally)
    rpms: Sequence[Path],
    repo_root: Path,
    release: str,
    channel: str,
    sign_key: str | None = None,
    gnupg_home: Path | None = None,
    *,
    resign: bool = True,
    unfreeze_base: bool = False,
    dnf_check: bool = True,
    keep: int = repolib.KEEP_GENERATIONS,
) -> PublishReport:
    """Publish ``rpms`` into ``repo_root`` (see the module docstring for the order of work).

    ``resign=False`` keeps the packages' existing signatures (promotion): they
    must then already verify against ``sign_key``.
    """
    started = time.monotonic()
    repolib.major_of(release)
    repolib.check_channel(channel)
    binary_dir, source_dir = repolib.repo_dirs(repo_root, release, channel)
    with step(f"read {len(rpms)} package(s)"):
        binary_inputs, source_inputs = _read_inputs([Path(p) for p in rpms])
    report = PublishReport(repo_root, release, channel, None)
    with tempfile.TemporaryDirectory(prefix="xcpbuild-publish-") as scratch:
        key, public_key = _resolve_key(sign_key, gnupg_home, Path(scratch))
        report.signed_by = key.fingerprint if key else None
        with repolib.locked(repo_root):
            crashpoints.reach("locked")
            for repo in (binary_dir, source_dir):
                report.recovered += [f"{repo.kind}/{name}" for name in repolib.recover(repo)]
            crashpoints.reach("recovered")
            if channel == "base" and not unfreeze_base and repolib.current_number(binary_dir) is not None:
                raise PublishError(
                    f"the base channel of {release} is already published and frozen",
                    hint="publish updates to `updates` (or `testing`); --unfreeze-base overrides, deliberately",
                )
            plans = [
                _Plan(repo, inputs, repolib.current_generation(repo), RepoDirReport(repo.path))
                for repo, inputs in ((binary_dir, binary_inputs), (source_dir, source_inputs))
                if inputs
            ]
            for plan in plans:
                plan.report.previous_generation = plan.current.number if plan.current else None
                _dedupe(plan)
                report.repos.append(plan.report)
            plans = [plan for plan in plans if plan.inputs]
            try:
                for plan in plans:
                    extra = _extra_repos(repo_root, release, channel) if dnf_check else None
                    _prepare(plan, key, public_key, resign=resign, release=release, extra=extra)
                for plan in plans:
                    with step(f"swap in the new generation of {plan.repo.path}"):
                        _go_live(plan)
                    plan.report.added = sorted(item.record.nevra for item in plan.inputs)
            finally:
                for plan in plans:
                    if plan.staging is not None:
                        shutil.rmtree(plan.staging, ignore_errors=True)
            for plan in plans:
                repolib.prune(plan.repo, keep)
            crashpoints.reach("pruned")
    report.seconds = time.monotonic() - started
    return report


def _prepare(
    plan: _Plan,
    key: gpg.SigningKey | None,
    public_key: Path | None,
    *,
    resign: bool,
    release: str,
    extra: list[dnf.Repo] | None,
) -> None:
    """Stage, sign, verify, build metadata and check one repo dir (live repo untouched)."""
    with step(f"stage {len(plan.inputs)} package(s) for {plan.repo.path}"):
        plan.staging = _stage(plan)
        crashpoints.reach("staged")
    staged = [item.staged for item in plan.inputs if item.staged is not None]
    if key is not None and resign:
        with step(f"sign {len(staged)} package(s) with key {key.short_id}"):
            rpmsign.sign(staged, key)
    crashpoints.reach("signed")
    with step(f"verify {len(staged)} package signature(s)"):
        problems = rpmsign.check(staged, public_key, key.short_id if key else None)
    if problems:
        raise SigningError(
            f"{problems[0].path.name}: {problems[0].detail}",
            hint="the package is damaged or not signed by the publishing key; nothing was published",
        )
    crashpoints.reach("verified")
    _build_metadata(plan, key, public_key)
    if extra is not None:
        _check_staged(plan, public_key, release, extra)
    else:
        problems_md = createrepo.check_repo(plan.staging, [])
        if problems_md:
            raise PublishError(f"the staged repository is inconsistent: {problems_md[0]}")


@dataclass
class PromoteReport:
    source_channel: str
    publish: PublishReport
    promoted: list[str] = field(default_factory=list)


def promote(
    repo_root: Path,
    release: str,
    from_channel: str,
    to_channel: str,
    names: Sequence[str],
    *,
    sign_key: str | None = None,
    gnupg_home: Path | None = None,
    dnf_check: bool = True,
) -> PromoteReport:
    """Publish the newest build of each package ``names`` from one channel into another.

    The packages keep their signatures (they were verified when first published
    and are verified again against ``sign_key``); the target's metadata is
    rebuilt, signed, checked and swapped in like any publish. A source package
    of the same name travels with its binaries.
    """
    repolib.check_channel(from_channel)
    repolib.check_channel(to_channel)
    if from_channel == to_channel:
        raise UsageError("--from and --to name the same channel")
    if not names:
        raise UsageError("name at least one package to promote")
    files: list[Path] = []
    promoted: list[str] = []
    missing = set(names)
    for repo in repolib.repo_dirs(repo_root, release, from_channel):
        generation = repolib.current_generation(repo)
        if generation is None:
            continue
        for name in names:
            candidates = [p for p in generation.packages if p["name"] == name]
            if not candidates:
                continue
            newest = candidates[0]
            for pkg in candidates[1:]:
                if repolib.evr_compare(pkg, newest) > 0:
                    newest = pkg
            files.append(repo.path / str(newest["href"]))
            promoted.append(f"{name}-{newest['version']}-{newest['release']}.{newest['arch']}")
            missing.discard(name)
    if missing:
        raise PublishError(
            f"not in the {from_channel} channel of {release}: {', '.join(sorted(missing))}",
            hint=f"publish them to {from_channel} first, or check the names with `xcpbuild repo diff`",
        )
    report = publish(files, repo_root, release, to_channel, sign_key, gnupg_home, resign=False, dnf_check=dnf_check)
    return PromoteReport(from_channel, report, promoted)
