"""Publish RPMs into an XCP-ng yum repository safely, and promote between channels.

A publish, in order (each phase is a named crash point, see ``crashpoints``):

1. check the inputs (readable RPMs of a publishable arch, a real key, a known
   channel) before touching anything;
2. take the repository lock, clean up what an interrupted publisher left;
3. copy the new RPMs into a staging directory, sign the copies (rpmsign) and
   verify every signature against the exported public key only;
4. rename the signed copies into ``Packages/``: no metadata names them yet, so
   clients cannot see them, and a failure later removes them again;
5. build metadata in staging (``repodata`` next to a ``Packages`` symlink to the
   live one), reusing the live generation's records for unchanged packages,
   link in the previous generation's metadata files, sign ``repomd.xml``
   (detached ``repomd.xml.asc``) and verify that signature;
6. check the staged repo: every file repomd names matches its checksum, and a
   real dnf (gpgcheck and repo_gpgcheck on) installs the new packages from it;
7. turn the staging dir into a new generation and swap ``repodata`` atomically
   (see ``repo``); prune old generations.

Until the swap in step 7 clients see the live repository exactly as it was.
Re-publishing a NEVRA with the same content (same header digest, which signing
does not change) is a no-op; with different content it is refused. x86_64 and
Source are swapped one after the other: each is always whole on its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xcpbuild.adapters import createrepo, dnf, gpg, rpmsign
from xcpbuild.adapters.createrepo import PackageRecord
from xcpbuild.errors import PublishError, RpmError, SigningError, UsageError, VerifyError
from xcpbuild.log import get_logger, step
from xcpbuild.model.repo import check_channel, parse_release
from xcpbuild.pipeline.publish import crashpoints, evr, upgrade_check
from xcpbuild.pipeline.publish import repo as repolib
from xcpbuild.pipeline.publish.repo import Generation, RepoDir

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
    sign_seconds: float = 0.0
    metadata_seconds: float = 0.0
    check_seconds: float = 0.0
    packages_read: int = 0
    packages_reused: int = 0
    dnf_installed: list[str] = field(default_factory=list)
    upgrade_checked: list[str] = field(default_factory=list)  # live packages upgraded to the staged ones


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
    created: bool = False  # we created Packages/<filename> (undo it if the publish fails)


@dataclass
class _Plan:
    repo: RepoDir
    inputs: list[_Input]
    current: Generation | None
    report: RepoDirReport
    readd: list[str] = field(default_factory=list)  # hrefs of files kept from a retained generation
    staging: Path | None = None
    new_generation: Generation | None = None
    live: bool = False


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
    digests = rpmsign.header_digest([i.path for i in binary + source])
    for item in binary + source:
        item.identity = digests[item.path]
    return binary, source


def _dedupe(plan: _Plan) -> None:
    """Drop inputs already live with the same content; refuse changed content.

    Every retained generation counts, not only the live one: after a rollback
    a cached client may still fetch a file a newer generation named, so such a
    file is re-used as it is, never replaced.
    """
    repo = plan.repo
    live_names = {Path(h).name for h in plan.current.hrefs()} if plan.current else set()
    known: dict[str, str] = {}
    for number in repolib.generation_numbers(repo):
        if repolib.generation_dir_ok(repo, number):
            for href, digest in repolib.load_generation(repo, number).identity.items():
                known[Path(href).name] = digest
    fresh: dict[str, _Input] = {}
    for item in plan.inputs:
        previous = fresh.get(item.filename)
        if previous is not None:
            if previous.identity != item.identity:
                raise PublishError(f"two different packages named {item.filename} were given", hint="publish one")
            continue
        identity = known.get(item.filename)
        if identity is not None and identity != item.identity:
            raise PublishError(
                f"{item.record.nevra} is already published in {repo.path} with different content",
                hint="a published NEVRA never changes: bump the release and build again",
            )
        if identity is None:
            fresh[item.filename] = item
        elif item.filename in live_names:
            plan.report.unchanged.append(item.record.nevra)
        else:
            plan.readd.append(f"{repo.packages}/{item.filename}")
            plan.report.added.append(item.record.nevra)
    plan.inputs = list(fresh.values())


def _stage(plan: _Plan) -> Path:
    """Copy the inputs into a fresh staging dir (the originals are never modified)."""
    staging = plan.repo.path / f"{repolib.STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (staging / "incoming").mkdir(parents=True)
    for item in plan.inputs:
        item.staged = staging / "incoming" / item.filename
        shutil.copyfile(item.path, item.staged)
    return staging


def _place(plan: _Plan) -> None:
    """Rename the signed, verified copies into Packages/ (unreferenced until the swap)."""
    assert plan.staging is not None
    plan.repo.packages_dir.mkdir(parents=True, exist_ok=True)
    for item in plan.inputs:
        assert item.staged is not None
        target = plan.repo.packages_dir / item.filename
        item.created = not target.exists()
        repolib.fsync_file(item.staged)  # durable before anything can name it
        item.staged.replace(target)
        crashpoints.reach("placed")
    repolib.fsync_dir(plan.repo.packages_dir)
    # The staged repo sees the live Packages/, so dnf and the checksum check read
    # exactly the files the live repo will serve.
    (plan.staging / plan.repo.packages).symlink_to(Path("..", plan.repo.packages))


def _unplace(plan: _Plan) -> None:
    """Undo ``_place`` after a failure: remove the files this publish created."""
    for item in plan.inputs:
        if item.created:
            (plan.repo.packages_dir / item.filename).unlink(missing_ok=True)


def _remove_empty_dirs(repo: RepoDir, root: Path) -> None:
    """After a failed first publish, take away the directories it created (only empty ones)."""
    for directory in (repo.packages_dir, repo.path, *repo.path.parents):
        if directory == root or root not in directory.parents:
            return
        try:
            directory.rmdir()
        except OSError:
            return


def _previous_stats(current: Generation | None) -> dict[str, createrepo.StatKey]:
    stats: dict[str, createrepo.StatKey] = {}
    for pkg in current.packages if current else []:
        raw = pkg.get("stat")
        if isinstance(raw, list) and len(raw) == 3:
            stats[str(pkg["href"])] = (int(raw[0]), int(raw[1]), int(raw[2]))
    return stats


def _record_dict(record: PackageRecord) -> dict[str, object]:
    data: dict[str, object] = dict(vars(record))
    data["stat"] = list(record.stat)
    return data


def _build_metadata(plan: _Plan, key: gpg.SigningKey | None, public_key: Path | None, sqlite: bool) -> None:
    assert plan.staging is not None
    current = plan.current
    new_hrefs = [f"{plan.repo.packages}/{item.filename}" for item in plan.inputs]
    hrefs = sorted({*(current.hrefs() if current else []), *plan.readd, *new_hrefs})
    previous = plan.repo.generation_dir(current.number) / "repodata" if current else None
    previous_entries = createrepo.read_repomd(previous) if previous is not None else []
    # Once a repo carries sqlite databases it keeps them: clients may rely on them.
    sqlite = sqlite or any(entry.type.endswith("_db") for entry in previous_entries)
    with step(f"metadata for {len(hrefs)} packages in {plan.repo.kind}") as timing:
        result = createrepo.build_repodata(
            plan.staging,
            hrefs,
            plan.staging / "repodata",
            previous=previous,
            previous_stats=_previous_stats(current),
            sqlite=sqlite,
        )
    plan.report.metadata_seconds = timing.seconds
    plan.report.packages_read, plan.report.packages_reused = result.read, result.reused
    crashpoints.reach("metadata")
    if previous is not None:
        names = [Path(e.href).name for e in previous_entries]
        repolib.link_previous_metadata(previous, plan.staging / "repodata", names)
    if key is not None and public_key is not None:
        repomd = plan.staging / "repodata" / "repomd.xml"
        signature = gpg.detach_sign(key, repomd, repomd.with_name("repomd.xml.asc"))
        gpg.verify_detached(public_key, repomd, signature)
    crashpoints.reach("repomd-signed")
    identity = {}
    for number in repolib.generation_numbers(plan.repo):
        if plan.readd and repolib.generation_dir_ok(plan.repo, number):
            identity.update(repolib.load_generation(plan.repo, number).identity)
    identity.update(current.identity if current else {})
    identity.update({f"{plan.repo.packages}/{item.filename}": item.identity for item in plan.inputs})
    plan.new_generation = Generation(
        number=max([0, *repolib.generation_numbers(plan.repo)]) + 1,
        parent=current.number if current else None,
        action="publish",
        packages=[_record_dict(r) for r in result.packages],
        identity={h: identity[h] for h in hrefs if h in identity},
        created=time.time(),
    )


def _check_staged(
    plan: _Plan,
    public_key: Path | None,
    release: str,
    extra: Sequence[dnf.Repo] | None,
    upgrade_from: Sequence[str] | None = None,
) -> None:
    assert plan.staging is not None
    new_hrefs = [f"{plan.repo.packages}/{item.filename}" for item in plan.inputs]
    problems = createrepo.check_repo(plan.staging, new_hrefs)
    if problems:
        raise PublishError(f"the staged repository is inconsistent: {problems[0]}")
    crashpoints.reach("checked")
    if extra is None or plan.repo.packages != "Packages" or not plan.inputs:
        return
    # One dnf transaction installs one version of a name: check the newest of each.
    newest: dict[tuple[str, str], PackageRecord] = {}
    for item in plan.inputs:
        name_arch = (item.record.name, item.record.arch)
        if name_arch not in newest or evr.evr_compare(vars(item.record), vars(newest[name_arch])) > 0:
            newest[name_arch] = item.record
    targets = sorted(record.nevra for record in newest.values())
    with step(f"dnf installs {len(targets)} new package(s) from the staged repository") as checking:
        try:
            result = dnf.install([dnf.Repo("staged", plan.staging), *extra], targets, public_key, release)
        except VerifyError as exc:
            raise VerifyError(
                exc.message,
                hint="nothing was published; dnf resolves against this channel plus the live base and updates "
                "channels of the release, so publish missing dependencies there (or together) first",
            ) from exc
    plan.report.check_seconds = checking.seconds
    plan.report.dnf_installed = result.installed
    started = time.monotonic()
    upgrade = upgrade_check.check(plan.repo, release, plan.staging, upgrade_from=upgrade_from)
    plan.report.upgrade_checked = upgrade.upgraded
    plan.report.check_seconds += time.monotonic() - started
    crashpoints.reach("dnf-checked")


def _go_live(plan: _Plan) -> None:
    """Turn the staging dir into a generation and swap it in (the only step clients can see)."""
    assert plan.staging is not None and plan.new_generation is not None
    (plan.staging / plan.repo.packages).unlink()
    shutil.rmtree(plan.staging / "incoming")
    repolib.write_generation(plan.staging, plan.new_generation)
    for path in (plan.staging / "repodata").iterdir():
        repolib.fsync_file(path)  # a power cut must not leave a live but empty file
    repolib.fsync_dir(plan.staging / "repodata")
    plan.repo.generations.mkdir(exist_ok=True)
    plan.staging.rename(plan.repo.generation_dir(plan.new_generation.number))
    plan.staging = None
    repolib.fsync_dir(plan.repo.generations)
    crashpoints.reach("generation")
    repolib.swap(plan.repo, plan.new_generation.number)
    plan.live = True
    crashpoints.reach("swapped")
    plan.report.generation = plan.new_generation.number


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
    sqlite: bool = False,
    keep: int = repolib.KEEP_GENERATIONS,
    upgrade_from: Sequence[str] | None = None,
) -> PublishReport:
    """Publish ``rpms`` into ``repo_root`` (see the module docstring for the order of work).

    ``resign=False`` keeps the packages' existing signatures (promotion): they
    must then already verify against ``sign_key``. ``sqlite=True`` adds yum's
    sqlite databases to the metadata (kept from then on).
    """
    started = time.monotonic()
    release = parse_release(release)
    check_channel(channel)
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
            plans = [plan for plan in plans if plan.inputs or plan.readd]
            extra = _extra_repos(repo_root, release, channel) if dnf_check else None
            try:
                for plan in plans:
                    _prepare(
                        plan, key, public_key, resign=resign, release=release, extra=extra, sqlite=sqlite,
                        upgrade_from=upgrade_from,
                    )  # fmt: skip
                for plan in plans:
                    with step(f"swap in the new generation of {plan.repo.path}"):
                        _go_live(plan)
                    plan.report.added = sorted([*plan.report.added, *(i.record.nevra for i in plan.inputs)])
            finally:
                for plan in plans:
                    if plan.staging is not None:
                        shutil.rmtree(plan.staging, ignore_errors=True)
                    if not plan.live:
                        _unplace(plan)
                        if plan.current is None:
                            _remove_empty_dirs(plan.repo, repo_root)
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
    sqlite: bool,
    upgrade_from: Sequence[str] | None = None,
) -> None:
    """Stage, sign, verify, place, build metadata and check one repo dir (nothing live changes)."""
    with step(f"stage {len(plan.inputs)} package(s) for {plan.repo.path}"):
        plan.staging = _stage(plan)
        crashpoints.reach("staged")
    staged = [item.staged for item in plan.inputs if item.staged is not None]
    if key is not None and resign and staged:
        with step(f"sign {len(staged)} package(s) with key {key.short_id}") as signing:
            rpmsign.sign(staged, key)
        plan.report.sign_seconds = signing.seconds
    crashpoints.reach("signed")
    to_check = staged + [plan.repo.path / href for href in plan.readd]
    with step(f"verify {len(to_check)} package signature(s)"):
        problems = rpmsign.check(to_check, public_key, key.short_id if key else None)
    if problems:
        raise SigningError(
            f"{problems[0].path.name}: {problems[0].detail}",
            hint="the package is damaged or not signed by the publishing key; nothing was published",
        )
    crashpoints.reach("verified")
    _place(plan)
    _build_metadata(plan, key, public_key, sqlite)
    _check_staged(plan, public_key, release, extra, upgrade_from)


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
    check_channel(from_channel)
    check_channel(to_channel)
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
                if evr.evr_compare(pkg, newest) > 0:
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
