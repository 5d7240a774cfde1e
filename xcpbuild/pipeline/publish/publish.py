"""Publish RPMs into an XCP-ng yum repository safely, and promote between channels.

A publish, in order (each phase is a named crash point, see ``crashpoints``):

1. check the inputs (readable RPMs of a publishable arch, a real key, a known
   channel) before touching anything;
2. take the repository lock, clean up what an interrupted publisher left;
3. write signed copies of the new RPMs into a staging directory (``rpmsig``:
   one gpg-agent session per core, rpmsign for keys the agent cannot use
   unattended; unsigned or kept signatures: plain copies) and verify every
   signature against the exported public key only;
4. rename the signed copies into ``Packages/``: no metadata names them yet, so
   clients cannot see them, and a failure later removes them again;
5. build metadata in staging (``repodata`` next to a ``Packages`` symlink to the
   live one), reusing the live generation's records for unchanged packages,
   link in the previous generation's metadata files, sign ``repomd.xml``
   (detached ``repomd.xml.asc``); with a key, write the packages' signed
   provenance into the staged ``repodata`` too (``attest``), so it goes live
   with the metadata in the same swap;
6. check the staged repo: the repomd signature verifies against the public key
   alone, every file repomd names matches its checksum, and a real dnf
   (gpgcheck and repo_gpgcheck on) installs the new packages from it in one test
   transaction (resolved, every signature checked, rpm's transaction checks run;
   nothing unpacked) and upgrades the live packages to it (``upgrade_check``).
   dnf's helper is started before step 3, so its start-up, the key's import and
   the live packages' part overlap steps 3-5, and this process's own checks
   overlap dnf's;
7. turn the staging dir into a new generation and swap ``repodata`` atomically
   (see ``repo``); prune old generations.

Until the swap in step 7 clients see the live repository exactly as it was.
Re-publishing a NEVRA with the same content (same header digest, which signing
does not change) is a no-op; with different content it is refused. x86_64 and
Source are swapped one after the other: each is always whole on its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xcpbuild.adapters import createrepo, dnf, gpg, rpmsig, rpmsign
from xcpbuild.adapters.createrepo import PackageRecord
from xcpbuild.errors import PublishError, RpmError, SigningError, UsageError, VerifyError
from xcpbuild.log import get_logger, step
from xcpbuild.model.repo import check_channel, parse_release
from xcpbuild.pipeline.publish import attest, crashpoints, evr, space, upgrade_check
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
    upgrade_root: str = ""  # how the upgrade check recorded them: "fresh" or "reused, ..." ("" if it did not run)
    upgrade_cached: list[str] = field(default_factory=list)  # live repos whose metadata came from the kept solv cache
    install_cached: list[str] = field(default_factory=list)  # the same, for the install check's live repos
    provenance: list[str] = field(default_factory=list)  # signed envelopes the new generation brought
    provenance_seconds: float = 0.0


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


@dataclass(frozen=True)
class _Input:
    path: Path
    record: PackageRecord
    filename: str
    identity: str  # the header digest: the content, whatever the signature


@dataclass(frozen=True)
class _Plan:
    """What a publish will do to one repo dir, decided under the lock before anything is written."""

    repo: RepoDir
    current: Generation | None
    inputs: tuple[_Input, ...]  # new to this repo dir
    readd: tuple[str, ...]  # hrefs of files kept from a retained generation, named again
    report: RepoDirReport
    given: tuple[_Input, ...] = ()  # every input for this repo dir, new or not (their provenance)

    @property
    def hrefs(self) -> list[str]:
        return [f"{self.repo.packages}/{item.filename}" for item in self.inputs]


@dataclass(frozen=True)
class _Prepared:
    """A repo dir's next generation, built and checked in ``staging``; only the swap is left."""

    plan: _Plan
    staging: Path
    created: tuple[str, ...]  # files this publish put into Packages/ (taken away unless it goes live)
    generation: Generation
    upgrade_root: str = ""  # the key of the root the upgrade check saved in staging ("" if none)


def _canonical_name(record: PackageRecord) -> str:
    return f"{record.name}-{record.version}-{record.release}.{record.arch}.rpm"


def _read_inputs(rpms: Sequence[Path]) -> tuple[list[_Input], list[_Input]]:
    """(binary, source) inputs; RpmError/UsageError on anything unpublishable."""
    if not rpms:
        raise UsageError("no RPM files given")
    records: list[tuple[Path, PackageRecord]] = []
    for path in rpms:
        if not path.is_file():
            raise RpmError(f"{path} does not exist or is not a file")
        record = createrepo.read_package(path)
        if record.arch != "src" and record.arch not in BINARY_ARCHES:
            raise RpmError(
                f"{path.name} is for arch {record.arch}; XCP-ng repositories carry x86_64, noarch and src",
                hint="build for x86_64 (or noarch) and publish that",
            )
        records.append((path, record))
    digests = rpmsign.header_digest([path for path, _ in records])
    items = [_Input(path, record, _canonical_name(record), digests[path]) for path, record in records]
    return [i for i in items if i.record.arch != "src"], [i for i in items if i.record.arch == "src"]


def _plan(repo: RepoDir, inputs: Sequence[_Input]) -> _Plan:
    """Drop inputs already live with the same content; refuse changed content.

    Every retained generation counts, not only the live one: after a rollback
    a cached client may still fetch a file a newer generation named, so such a
    file is re-used as it is, never replaced.
    """
    current = repolib.current_generation(repo)
    report = RepoDirReport(repo.path, previous_generation=current.number if current else None)
    live_names = {repolib.href_name(h) for h in current.hrefs()} if current else set()
    known: dict[str, str] = {}
    for number in repolib.generation_numbers(repo):
        if repolib.generation_dir_ok(repo, number):
            for href, digest in repolib.load_generation(repo, number).identity.items():
                known[repolib.href_name(href)] = digest
    fresh: dict[str, _Input] = {}
    readd: list[str] = []
    for item in inputs:
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
            report.unchanged.append(item.record.nevra)
        else:
            readd.append(f"{repo.packages}/{item.filename}")
            report.added.append(item.record.nevra)
    return _Plan(repo, current, tuple(fresh.values()), tuple(readd), report, tuple(inputs))


@contextlib.contextmanager
def _staging_dir(repo: RepoDir) -> Iterator[Path]:
    """A fresh staging dir in ``repo``, removed on the way out (already gone once it went live)."""
    staging = repo.path / f"{repolib.STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (staging / "incoming").mkdir(parents=True)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage(plan: _Plan, staging: Path) -> list[Path]:
    """Copy the inputs into ``staging`` (the originals are never modified); the copies, in input order."""
    staged = []
    for item in plan.inputs:
        copy = staging / "incoming" / item.filename
        shutil.copyfile(item.path, copy)
        staged.append(copy)
    return staged


def _place(plan: _Plan, staging: Path, staged: Sequence[Path]) -> tuple[str, ...]:
    """Rename the signed, verified copies into Packages/ (unreferenced until the swap).

    Returns the names of the files this created; on failure it takes them away again itself.
    """
    plan.repo.packages_dir.mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    try:
        for item, copy in zip(plan.inputs, staged, strict=True):
            target = plan.repo.packages_dir / item.filename
            if not target.exists():
                created.append(item.filename)
            copy.replace(target)  # made durable with the metadata, before the swap (see _go_live)
            crashpoints.reach("placed")
    except BaseException:
        _unplace(plan.repo, created)
        raise
    # The staged repo sees the live Packages/, so dnf and the checksum check read
    # exactly the files the live repo will serve.
    (staging / plan.repo.packages).symlink_to(Path("..", plan.repo.packages))
    return tuple(created)


def _unplace(repo: RepoDir, created: Sequence[str]) -> None:
    """Undo ``_place`` after a failure: remove the files this publish created."""
    for name in created:
        (repo.packages_dir / name).unlink(missing_ok=True)


def _remove_empty_dirs(repo: RepoDir, root: Path) -> None:
    """After a failed first publish, take away the directories it created (only empty ones)."""
    for directory in (repo.packages_dir, repo.path, *repo.path.parents):
        if directory == root or root not in directory.parents:
            return
        try:
            directory.rmdir()
        except OSError:
            return


def _build_metadata(plan: _Plan, staging: Path, key: gpg.SigningKey | None, sqlite: bool) -> Generation:
    """Write and sign the staged metadata; the generation it makes (not yet on disk as one)."""
    current = plan.current
    hrefs = sorted({*(current.hrefs() if current else []), *plan.readd, *plan.hrefs})
    previous = plan.repo.generation_dir(current.number) / "repodata" if current else None
    previous_entries = createrepo.read_repomd(previous) if previous is not None else []
    # Once a repo carries sqlite databases it keeps them: clients may rely on them.
    sqlite = sqlite or any(entry.type.endswith("_db") for entry in previous_entries)
    with step(f"metadata for {len(hrefs)} packages in {plan.repo.kind}") as timing:
        result = createrepo.build_repodata(
            staging,
            hrefs,
            staging / "repodata",
            previous=previous,
            previous_records=current.packages if current else None,
            sqlite=sqlite,
        )
    plan.report.metadata_seconds = timing.seconds
    plan.report.packages_read, plan.report.packages_reused = result.read, result.reused
    crashpoints.reach("metadata")
    if previous is not None:
        names = [Path(e.href).name for e in previous_entries]
        repolib.link_previous_metadata(previous, staging / "repodata", names)
    if key is not None:
        with step(f"sign repomd.xml of {plan.repo.kind}"):
            repomd = staging / "repodata" / "repomd.xml"
            gpg.detach_sign(key, repomd, repomd.with_name("repomd.xml.asc"))
    crashpoints.reach("repomd-signed")
    identity = {}
    for number in repolib.generation_numbers(plan.repo):
        if plan.readd and repolib.generation_dir_ok(plan.repo, number):
            identity.update(repolib.load_generation(plan.repo, number).identity)
    identity.update(current.identity if current else {})
    identity.update({f"{plan.repo.packages}/{item.filename}": item.identity for item in plan.inputs})
    return Generation(
        number=max([0, *repolib.generation_numbers(plan.repo)]) + 1,
        parent=current.number if current else None,
        action="publish",
        packages=list(result.packages),
        identity={h: identity[h] for h in hrefs if h in identity},
        created=time.time(),
    )


def _check_staged(plan: _Plan, staging: Path, key: gpg.SigningKey | None, checks: _Checks | None) -> None:
    """Tell dnf's checks the staged repo dir is ready, then make this process's own checks of it.

    They run while dnf loads: the repomd signature against the public key alone, every file
    repomd names against its checksum. ``_dnf_verdict`` waits for dnf's answer.
    """
    if checks is not None:
        checks.dnf.ready()
    with step(f"check the staged metadata of {plan.repo.kind}"):
        if key is not None:
            repomd = staging / "repodata" / "repomd.xml"
            gpg.verify_detached(key.public_key, repomd, repomd.with_name("repomd.xml.asc"))
        problems = createrepo.check_repo(staging, plan.hrefs)
    if problems:
        raise PublishError(f"the staged repository is inconsistent: {problems[0]}")


def _dnf_verdict(plan: _Plan, checks: _Checks | None) -> str:
    """dnf's answer to the checks ``_check_staged`` released; the key of the upgrade check's saved root ("" if none)."""
    if checks is None:
        return ""
    targets, live = checks.dnf.install.packages, len(checks.upgrade.dnf.packages)
    with step(
        f"dnf test-installs {len(targets)} new package(s) from the staged repository and upgrades {live} live one(s)"
    ) as checking:
        try:
            result, found = checks.dnf.finish()
        except VerifyError as exc:
            raise VerifyError(
                exc.message,
                hint="nothing was published; dnf resolves against this channel plus the live base and updates "
                "channels of the release, so publish missing dependencies there (or together) first",
            ) from exc
        upgrade = upgrade_check.judge(checks.upgrade, found)
    plan.report.check_seconds = checking.seconds
    plan.report.dnf_installed = result.installed
    plan.report.install_cached = list(result.cached)
    plan.report.upgrade_checked = upgrade.upgraded
    plan.report.upgrade_root = upgrade.root
    plan.report.upgrade_cached = list(upgrade.cached)
    crashpoints.reach("dnf-checked")
    return upgrade.cache_key


@dataclass(frozen=True)
class _Checks:
    """The dnf checks of one repo dir, under way since the start of its ``_prepare``."""

    dnf: dnf.PublishChecks
    upgrade: upgrade_check.Request


@contextlib.contextmanager
def _started_checks(
    plan: _Plan,
    staging: Path,
    *,
    release: str,
    extra: list[dnf.Repo] | None,
    upgrade_from: Sequence[str] | None,
    public_key: Path | None,
) -> Iterator[_Checks | None]:
    """Start the dnf checks of a binary repo dir with new packages (None: no check), stopped on the way out."""
    if extra is None or plan.repo.packages != "Packages" or not plan.inputs:
        yield None
        return
    asked = upgrade_check.request(plan.repo, release, upgrade_from=upgrade_from, save=staging / upgrade_check.SAVED)
    # One dnf transaction installs one version of a name: check the newest of each.
    targets = tuple(sorted(record.nevra for record in evr.newest([item.record for item in plan.inputs]).values()))
    install = dnf.InstallRequest((dnf.Repo("staged", staging), *extra), targets, public_key)
    with dnf.PublishChecks(release, asked.dnf, install) as checks:
        yield _Checks(checks, asked)


def _go_live(prepared: _Prepared) -> int:
    """Turn the staging dir into a generation and swap it in (the only step clients can see)."""
    repo, staging, generation = prepared.plan.repo, prepared.staging, prepared.generation
    (staging / repo.packages).unlink()  # incoming/ and generation.json: see _prepare
    repo.generations.mkdir(exist_ok=True)
    built = repo.generation_dir(generation.number)
    staging.rename(built)
    repolib.remember_generation(built, generation)  # read back by the pruning, and by the next publish
    try:
        # Before the swap, and only then, everything the new generation names must be durable:
        # the placed packages, the metadata files, generation.json and the renames. One syncfs
        # of the repo dir's filesystem (Packages/, the staging dir and .generations are on it:
        # rename(2) moved files between them) replaces an fsync per package and per file; a
        # power cut before it leaves the old generation live and only leftovers for `recover`.
        repolib.sync_filesystem(repo.path)
        crashpoints.reach("generation")
        repolib.swap(repo, generation.number)
    except BaseException:
        if repolib.current_number(repo) != generation.number:
            shutil.rmtree(built, ignore_errors=True)  # never swapped in: not a generation anyone sees
        raise
    # The check's recorded root was made durable by the syncfs above; a crash before this leaves it
    # in the generation dir (pruned with it) and the previous root in place.
    upgrade_check.adopt(repo, built, prepared.upgrade_root)
    crashpoints.reach("swapped")
    return generation.number


@contextlib.contextmanager
def signing_key(key_id: str | None, gnupg_home: Path | None = None) -> Iterator[gpg.SigningKey | None]:
    """The key a user named (``--sign-key``, ``--gnupg-home``), resolved once for a whole command; None: unsigned."""
    if key_id is None:
        yield None
        return
    with gpg.named_key(key_id, gnupg_home) as key:
        yield key


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


def publish(
    rpms: Sequence[Path],
    repo_root: Path,
    release: str,
    channel: str,
    *,
    key: gpg.SigningKey | None = None,
    resign: bool = True,
    unfreeze_base: bool = False,
    dnf_check: bool = True,
    sqlite: bool = False,
    keep: int = repolib.KEEP_GENERATIONS,
    upgrade_from: Sequence[str] | None = None,
    rpmv3: bool = False,
) -> PublishReport:
    """Publish ``rpms`` into ``repo_root`` (see the module docstring for the order of work).

    Signed with ``key`` (None: an unsigned repository). ``resign=False`` keeps the
    packages' existing signatures (promotion): they must then already verify
    against ``key``. ``sqlite=True`` adds yum's sqlite databases to the metadata
    (kept from then on). ``upgrade_from`` names the channels whose live packages
    the upgrade check upgrades to the staged ones (default: ``channel``'s own).
    ``rpmv3`` gives every package the header+payload signature, not only those
    without a payload digest (``rpmsig``).
    """
    started = time.monotonic()
    release = parse_release(release)
    check_channel(channel)
    repolib.check_root(repo_root)
    binary_dir, source_dir = repolib.repo_dirs(repo_root, release, channel)
    with step(f"read {len(rpms)} package(s)"):
        binary_inputs, source_inputs = _read_inputs([Path(p) for p in rpms])
    report = PublishReport(repo_root, release, channel, key.fingerprint if key else None)
    needed = space.estimate([Path(p) for p in rpms], [binary_dir.repodata, source_dir.repodata])
    with space.guard(_watched(repo_root), needed), repolib.locked(repo_root):
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
            _plan(repo, inputs) for repo, inputs in ((binary_dir, binary_inputs), (source_dir, source_inputs)) if inputs
        ]
        report.repos += [plan.report for plan in plans]
        plans = [plan for plan in plans if plan.inputs or plan.readd]
        extra = _extra_repos(repo_root, release, channel) if dnf_check else None
        _apply(
            plans, repo_root, key, resign=resign, release=release, extra=extra, sqlite=sqlite, needed=needed,
            upgrade_from=upgrade_from, rpmv3=rpmv3,
        )  # fmt: skip
        for plan in plans:
            repolib.prune(plan.repo, keep)
        crashpoints.reach("pruned")
    report.seconds = time.monotonic() - started
    return report


def _apply(
    plans: Sequence[_Plan],
    repo_root: Path,
    key: gpg.SigningKey | None,
    *,
    resign: bool,
    release: str,
    extra: list[dnf.Repo] | None,
    sqlite: bool,
    needed: int,
    upgrade_from: Sequence[str] | None = None,
    rpmv3: bool = False,
) -> None:
    """Prepare every repo dir, then swap them in one after the other; on failure undo what is not live."""
    prepared: list[_Prepared] = []
    swapped = 0
    try:
        with contextlib.ExitStack() as stagings:
            # Inside the staging clean-up, so a tool that failed on a full disk is seen while it is still full.
            stagings.enter_context(space.guard(_watched(repo_root), needed))
            for plan in plans:
                staging = stagings.enter_context(_staging_dir(plan.repo))
                # First, so dnf's helper loads dnf and the live packages while this process signs and indexes.
                public_key = key.public_key if key else None
                started = _started_checks(
                    plan, staging, release=release, extra=extra, upgrade_from=upgrade_from, public_key=public_key
                )
                checks = stagings.enter_context(started)
                prepared.append(_prepare(plan, staging, key, resign=resign, sqlite=sqlite, checks=checks, rpmv3=rpmv3))
            for item in prepared:
                with step(f"swap in the new generation of {item.plan.repo.path}"):
                    item.plan.report.generation = _go_live(item)
                swapped += 1
                item.plan.report.added = sorted([*item.plan.report.added, *(i.record.nevra for i in item.plan.inputs)])
    except BaseException:
        for item in prepared[swapped:]:
            _unplace(item.plan.repo, item.created)
        for plan in plans[swapped:]:
            if plan.current is None:
                _remove_empty_dirs(plan.repo, repo_root)
        raise


def _watched(repo_root: Path) -> list[Path]:
    """The filesystems a publish writes to: the repository's, and the temporary one (dnf, gpg)."""
    return [repo_root, Path(tempfile.gettempdir())]


def _prepare(
    plan: _Plan,
    staging: Path,
    key: gpg.SigningKey | None,
    *,
    resign: bool,
    sqlite: bool,
    checks: _Checks | None,
    rpmv3: bool = False,
) -> _Prepared:
    """Stage, sign, verify, place, build metadata and check one repo dir (nothing live changes)."""
    if key is not None and resign and plan.inputs:
        # Signing writes the staged copies itself: one write per package, not a copy and then a rewrite.
        with step(f"stage and sign {len(plan.inputs)} package(s) with key {key.short_id}") as signing:
            staged = [staging / "incoming" / item.filename for item in plan.inputs]
            rpmsig.sign_copies([item.path for item in plan.inputs], staged, key, rpmv3=rpmv3)
            crashpoints.reach("staged")
        plan.report.sign_seconds = signing.seconds
    else:
        with step(f"stage {len(plan.inputs)} package(s) for {plan.repo.path}"):
            staged = _stage(plan, staging)
            crashpoints.reach("staged")
    crashpoints.reach("signed")
    to_check = staged + [plan.repo.path / href for href in plan.readd]
    with step(f"verify {len(to_check)} package signature(s)"):
        problems = rpmsign.check(to_check, key.public_key if key else None, key.short_id if key else None)
    if problems:
        raise SigningError(
            f"{problems[0].path.name}: {problems[0].detail}",
            hint="the package is damaged or not signed by the publishing key; nothing was published",
        )
    crashpoints.reach("verified")
    created = _place(plan, staging, staged)
    try:
        generation = _build_metadata(plan, staging, key, sqlite)
        if key is not None:
            _attest(plan, staging, generation.number, key)
        crashpoints.reach("attested")
        _check_staged(plan, staging, key, checks)
        # While dnf checks: the signed copies are in Packages/ now, and the generation's record
        # is written (made durable with the rest in ``_go_live``).
        shutil.rmtree(staging / "incoming")
        repolib.write_generation(staging, generation, durable=False)
        crashpoints.reach("checked")
        upgrade_root = _dnf_verdict(plan, checks)
    except BaseException:
        _unplace(plan.repo, created)
        raise
    return _Prepared(plan, staging, created, generation, upgrade_root)


def _attest(plan: _Plan, staging: Path, number: int, key: gpg.SigningKey) -> None:
    """The packages' signed provenance into the staged repodata: it goes live in the same swap as the metadata."""
    previous = plan.repo.generation_dir(plan.current.number) / "repodata" if plan.current else None
    rpms = [(item.path, item.filename) for item in plan.given]
    with step(f"sign the provenance of {len(rpms)} package(s) in {plan.repo.kind}") as timing:
        shipped = attest.stage(plan.repo, rpms, staging / "repodata", previous, generation=number, key=key)
    plan.report.provenance, plan.report.provenance_seconds = shipped.written, timing.seconds


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
    key: gpg.SigningKey | None = None,
    dnf_check: bool = True,
    upgrade_from: Sequence[str] | None = None,
) -> PromoteReport:
    """Publish the newest build of each package ``names`` from one channel into another.

    The packages keep their signatures (they were verified when first published
    and are verified again against ``key``); the target's metadata is
    rebuilt, signed, checked and swapped in like any publish. A source package
    of the same name travels with its binaries.
    """
    check_channel(from_channel)
    check_channel(to_channel)
    repolib.check_root(repo_root)
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
            candidates = [p for p in generation.packages if p.name == name]
            if not candidates:
                continue
            newest = candidates[0]
            for pkg in candidates[1:]:
                if evr.evr_compare(pkg, newest) > 0:
                    newest = pkg
            files.append(repo.path / newest.href)
            promoted.append(f"{name}-{newest.version}-{newest.release}.{newest.arch}")
            missing.discard(name)
    if missing:
        raise PublishError(
            f"not in the {from_channel} channel of {release}: {', '.join(sorted(missing))}",
            hint=f"publish them to {from_channel} first, or check the names with `xcpbuild repo diff`",
        )
    report = publish(
        files, repo_root, release, to_channel, key=key, resign=False, dnf_check=dnf_check, upgrade_from=upgrade_from
    )
    return PromoteReport(from_channel, report, promoted)
