"""Builds: sources, patches and a spec in; SRPM, RPMs, a log and a record out.

A build runs in three parts:

- ``plan``: stage every input on the host (the upstream tarball or a tarball of
  this project's files, extra sources, the patch series, the rendered spec; or a
  package repository's SOURCES/ files and its own spec) and hash them;
- ``reuse``: the cache key is a sha256 over those hashes, the image (tag and id),
  the stage, the target and the options that change the result (``--define``,
  ``--rpmbuild-stage``, ``--rpmbuild-opts``, ``-e``, repositories), so it is known
  before any container runs. A finished build folder with that key holding a good
  record and its artifacts is reused: no container is started, nor the engine asked;
- ``run``: otherwise, in a container of the target's image (network none, uid
  1000, one time limit for the whole build), ``rpmbuild -bs`` makes the SRPM, then
  ``--stage srpm`` runs %prep from it (``rpmbuild -rp --nodeps``: rpmbuild applying
  the patches itself) and ``--stage rpm`` rebuilds it (on yum-builddep and
  dnf-builddep targets in an image that adds the SRPM's BuildRequires, installed
  while that image is built, never during the build: with the host's network on the
  xcp-ng-* targets, with none on ``local``, whose BuildRequires come only from
  repositories given with ``--repo-url``/``--local-repo``, see ``givenrepos``);
  ``--rpmbuild-stage L`` runs ``rpmbuild -rL`` on the SRPM instead. Every rpmbuild
  step first sources the image's ``/etc/xcpbuild/build-env.sh`` when it has one.

The folder ``WORK/builds/NAME-VERSION-RELEASE-TARGET-KEY12/`` keeps
``build.log`` (all the container printed), ``build-record.json`` (a
``record.BuildRecord``), the spec and ``SRPMS/``, ``RPMS/``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import hashlib
import json
import re
import shlex
import shutil
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from xcpbuild.adapters import container, dnf, owned, rpmheader
from xcpbuild.config import Settings
from xcpbuild.errors import (
    BuildError,
    ConfigError,
    ContainerStepError,
    PatchError,
    StepTimeoutError,
    UsageError,
    XcpbuildError,
)
from xcpbuild.log import get_logger, step
from xcpbuild.model.buildenv import ENV_SCRIPT
from xcpbuild.model.stage import STAGES, Stage, is_stage, makes_binaries
from xcpbuild.model.target import Target
from xcpbuild.pipeline.build import givenrepos, image, provenance, spec
from xcpbuild.pipeline.build.record import RECORD, Artifact, BuildRecord, Input, SourceInfo, StepRun
from xcpbuild.pipeline.build.record import load as load_record
from xcpbuild.pipeline.build.record import write as write_record
from xcpbuild.pipeline.sources import project as project_source
from xcpbuild.pipeline.sources import repofiles, source
from xcpbuild.pipeline.sources.package import DefinedPackage, Package, RepoPackage

log = get_logger("build")

__all__ = ["RECORD", "STAGES", "Artifact", "BuildRecord", "Input", "load_record"]

LOG = "build.log"
SCHEME = 1
DEFAULT_TIMEOUT = 3600.0
TOPDIR = PurePosixPath("/home/builder/rpmbuild")
TAIL_LINES = 15

InputRole = Literal["source", "patch", "spec"]
ArtifactKind = Literal["srpm", "rpm"]


@dataclass(frozen=True)
class BuildOptions:
    """How to build a resolved package (its ``--define``s are part of the package)."""

    stage: Stage = "rpm"
    upstream: str | None = None
    ref: str | None = None
    out: Path | None = None
    keep_container: bool = False
    timeout: float = DEFAULT_TIMEOUT
    rpmbuild_stage: str | None = None  # one of model.stage.RPMBUILD_LETTERS, run on the SRPM
    rpmbuild_opts: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()  # -e NAME=VALUE for every rpmbuild step
    mounts: tuple[tuple[str, str], ...] = ()  # -v HOST:CONTAINER
    enablerepo: tuple[str, ...] = ()
    disablerepo: tuple[str, ...] = ()
    no_update: bool = False  # use the images there are; never build or refresh one
    sources_dir: Path | None = None  # --sources DIR: files git-lfs pointers stand for
    repo_urls: tuple[str, ...] = ()  # --repo-url: repositories for BuildRequires
    local_repos: tuple[str, ...] = ()  # --local-repo CHANNEL: a channel of WORK/repo
    repo_key: Path | None = None  # --repo-key: the public key those are signed with

    def check(self) -> None:
        if not is_stage(self.stage):
            raise UsageError(f"unknown stage `{self.stage}` (choose {' or '.join(STAGES)})")
        if self.timeout <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        if self.rpmbuild_stage is not None and self.stage != "rpm":
            raise UsageError("--rpmbuild-stage replaces --stage's binary step; leave --stage at rpm")

    def keyed(self, package: Package) -> dict[str, Any]:
        """The options that change what a build makes, for its cache key and its record."""
        found: dict[str, Any] = {
            "defines": [list(d) for d in package.defines],
            "rpmbuild_stage": self.rpmbuild_stage,
            "rpmbuild_opts": list(self.rpmbuild_opts),
            # Values may be secrets: only their digest is keyed and recorded.
            "environment": {name: hashlib.sha256(value.encode()).hexdigest()[:16] for name, value in self.environment},
            "enablerepo": list(self.enablerepo),
            "disablerepo": list(self.disablerepo),
            "mounts": [f"{h}:{c}" for h, c in self.mounts],
        }
        return {k: v for k, v in found.items() if v}


@dataclass(frozen=True)
class BuildResult:
    folder: Path
    key: str
    reused: bool
    record: BuildRecord
    copied: tuple[Path, ...] = ()

    @property
    def artifacts(self) -> tuple[Artifact, ...]:
        return self.record.outputs

    def paths(self) -> list[Path]:
        return [self.folder / a.path for a in self.artifacts]


@dataclass(frozen=True)
class BuildPlan:
    """A build with every input staged and hashed; its key waits only for the image id."""

    package: Package
    options: BuildOptions
    spec: spec.RenderedSpec
    files: tuple[Path, ...]  # SOURCES: tarball, extra sources, patches
    inputs: tuple[Input, ...]
    source: SourceInfo
    build_requires: tuple[str, ...]
    image_tag: str
    builds: Path
    given: givenrepos.GivenRepos | None = None

    @property
    def needs_deps_image(self) -> bool:
        """Whether the binary step runs in an image that adds the BuildRequires."""
        target = self.package.target
        if target.builddeps == "none":
            return False
        if target.builddeps_only_from_given:
            # Without given repositories there is nothing to install from: steps that make no
            # binaries run where the SRPM was made, as before (plan() refused the others).
            return self.given is not None and bool(self.build_requires)
        return True

    def keyed(self) -> dict[str, Any]:
        found = self.options.keyed(self.package)
        if self.given is not None:
            found["given_repos"] = self.given.keyed()
        return found

    @property
    def target(self) -> str:
        return self.package.target.name

    @property
    def title(self) -> str:
        return f"{self.package.name} {self.spec.version}-{self.spec.release}"

    def key(self, image_id: str) -> str:
        return cache_key(self.inputs, self.image_tag, image_id, self.options.stage, self.target, self.keyed())

    def folder(self, key: str) -> Path:
        return self.builds / folder_name(self.package.name, self.spec.version, self.spec.release, self.target, key)


@dataclass
class _Log:
    """build.log plus the steps run, for the record."""

    handle: IO[str]
    steps: list[StepRun] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def write(self, line: str) -> None:
        self.handle.write(line + "\n")
        self.handle.flush()
        self.lines.append(line)
        if len(self.lines) > 400:
            del self.lines[:200]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(  # noqa: PLR0917 - every argument is a part of the key
    inputs: Sequence[Input],
    image_tag: str,
    image_id: str,
    stage: str,
    target: str,
    options: Mapping[str, Any] | None = None,
) -> str:
    """sha256 over every input's sha256, the image, the stage, the target and the keyed options."""
    payload: dict[str, Any] = {
        "scheme": SCHEME,
        "inputs": sorted((i.role, i.name, i.sha256) for i in inputs),
        "image": [image_tag, image_id],
        "stage": stage,
        "target": target,
    }
    if options:
        payload["options"] = dict(options)  # absent when empty: keys of plain builds stay as they were
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def folder_name(package: str, version: str, release: str, target: str, key: str) -> str:
    return f"{package}-{version}-{release}-{target}-{key[:12]}"


def build_requires(spec_text: str) -> list[str]:
    """Names in the spec's BuildRequires lines (conditionals not evaluated: a conservative list)."""
    names: list[str] = []
    for line in spec_text.splitlines():
        match = re.match(r"^\s*BuildRequires\s*:\s*(.+)$", line, re.IGNORECASE)
        if match:
            for item in re.split(r"[,\s]+", match.group(1)):
                if item and not re.match(r"^[<>=]+$|^[\d.:~^-]+$", item):
                    names.append(item)
    return names


def failing_patch(lines: Sequence[str], patches: Sequence[str]) -> str | None:
    """The patch rpmbuild was applying when %prep failed: the last series name its output mentions."""
    if not any("Bad exit status" in line and "(%prep)" in line for line in lines):
        return None
    # Patches are applied in series order and nothing after a failure names one,
    # so the last one mentioned is the one that failed.
    last = None
    for line in lines:
        for name in patches:
            if name in line:
                last = name
    return last


def _without_credentials(url: str) -> str:
    """The URL with any user:token@ removed: records and logs never hold secrets."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


# -- plan ---------------------------------------------------------------------------------------
def _stage_defined(
    settings: Settings, package: DefinedPackage, sources_dir: Path, options: BuildOptions
) -> tuple[list[Path], list[Input], SourceInfo, spec.RenderedSpec]:
    definition, target = package.definition, package.target
    upstream, ref = options.upstream, options.ref
    if definition.source_kind == "project":
        if upstream or ref:
            raise UsageError(f"package {package.name} is made from this project's files; --upstream/--ref do not apply")
        fetched_project = project_source.fetch(settings, definition, target.name, sources_dir)
        tarball, tar_sha, version = fetched_project.tarball, fetched_project.sha256, fetched_project.version
        info = SourceInfo("project", paths=definition.project_paths)
    else:
        fetched = source.fetch(
            settings, definition, target=target.name, upstream=upstream, ref=ref, out_dir=sources_dir
        )
        tarball, tar_sha, version = fetched.tarball, fetched.sha256, fetched.version
        info = SourceInfo(
            "git",
            upstream=_without_credentials(upstream or definition.upstream or ""),
            ref=fetched.ref,
            commit=fetched.commit,
        )
    files = [tarball]
    inputs = [Input(tarball.name, "source", tar_sha)]
    for name in definition.extra_sources:
        extra = definition.extra_sources_dir / name
        if not extra.is_file():
            raise ConfigError(
                f"extra source {name} of {package.name} is missing", hint=f"put it in {definition.extra_sources_dir}/"
            )
        shutil.copy2(extra, sources_dir / name)
        files.append(sources_dir / name)
        inputs.append(Input(name, "source", sha256_file(extra)))
    for patch in package.patch_files:
        shutil.copy2(patch, sources_dir / patch.name)
        files.append(sources_dir / patch.name)
        inputs.append(Input(patch.name, "patch", sha256_file(patch)))
    rendered = spec.render(settings, package, version=version, tarball=tarball.name)
    return files, inputs, info, rendered


def _stage_repository(
    settings: Settings, package: RepoPackage, sources_dir: Path, options: BuildOptions
) -> tuple[list[Path], list[Input], SourceInfo, spec.RenderedSpec]:
    if options.upstream or options.ref:
        raise UsageError(
            f"{package.repo.path.name} is a package repository: its SOURCES/ are built as they are; "
            "--upstream/--ref do not apply",
            hint="--upstream is for `xcpbuild patch check`",
        )
    staged = repofiles.stage_files(package, sources_dir, supplied_dir=options.sources_dir)
    commit, dirty = package.checkout if package.checkout is not None else (None, None)
    info = SourceInfo(
        "repository",
        upstream=_without_credentials(package.upstream_url) if package.upstream_url else None,
        ref=package.pinned_ref,
        commit=commit,
        repository=str(package.repo.path),
        dirty=dirty,
        supplied=tuple(f.name for f in staged if f.supplied),
    )
    inputs = [Input(f.name, "patch" if f.role == "patch" else "source", f.sha256) for f in staged]
    return [f.path for f in staged], inputs, info, spec.render(settings, package)


def plan(settings: Settings, package: Package, options: BuildOptions, sources_dir: Path) -> BuildPlan:
    """Stage and hash every input of ``package`` into ``sources_dir`` (no engine needed)."""
    target = package.target
    with step(f"stage {package.name} for {target.name}"):
        if isinstance(package, RepoPackage):
            files, inputs, info, rendered = _stage_repository(settings, package, sources_dir, options)
            requires = package.facts.build_requires
        else:
            files, inputs, info, rendered = _stage_defined(settings, package, sources_dir, options)
            requires = tuple(build_requires(rendered.text))
    inputs.append(Input(rendered.filename, "spec", hashlib.sha256(rendered.text.encode()).hexdigest()))
    given = givenrepos.resolve(
        settings, target, urls=options.repo_urls, channels=options.local_repos, key=options.repo_key
    )
    binary = options.stage == "rpm" and (options.rpmbuild_stage is None or makes_binaries(options.rpmbuild_stage))
    unmet = target.builddeps == "none" or (target.builddeps_only_from_given and given is None)
    if binary and unmet and requires:
        raise UsageError(
            f"{package.name} needs EL build dependencies ({', '.join(requires[:5])}) that target {target.name} "
            "cannot install",
            hint=f"build the SRPM here with --stage srpm, the RPMs on an xcp-ng-* target "
            f"(--target xcp-ng-{target.xcpng_release}), or give the repository that has them "
            "(--repo-url file://… or --local-repo CHANNEL, with --repo-key)",
        )
    if (options.enablerepo or options.disablerepo) and (target.builddeps == "none" or target.builddeps_only_from_given):
        raise UsageError(
            f"target {target.name} has no repositories of its own: --enablerepo/--disablerepo change nothing",
            hint="use them with an xcp-ng-* target; give this one its repositories with --repo-url/--local-repo",
        )
    check_repo_names(target, [*options.enablerepo, *options.disablerepo], given)
    return BuildPlan(
        package=package,
        options=options,
        spec=rendered,
        files=tuple(files),
        inputs=tuple(inputs),
        source=info,
        build_requires=requires,
        image_tag=image.plan(settings, target.name).tag,
        builds=settings.work_dir / "builds",
        given=given,
    )


# -- reuse --------------------------------------------------------------------------------------
def _reusable(folder: Path, key: str) -> BuildRecord | None:
    record = load_record(folder)
    if record is None or record.status != "ok" or record.key != key:
        return None
    for artifact in record.outputs:
        path = folder / artifact.path
        if not path.is_file() or sha256_file(path) != artifact.sha256:
            log.info("cached build %s lost %s; building again", folder.name, artifact.path)
            return None
    return record


def reuse(planned: BuildPlan, image_id: str) -> BuildResult | None:
    """The recorded result of the same inputs, image and options, or None (never with extra mounts)."""
    if planned.options.mounts:
        return None  # what a mount holds is not an input xcpbuild can hash
    key = planned.key(image_id)
    folder = planned.folder(key)
    record = _reusable(folder, key)
    if record is None:
        return None
    log.info("reusing %s (same inputs, image and stage)", folder)
    return BuildResult(folder, key, True, record, _copy_out(record.outputs, folder, planned.options.out))


def _copy_out(artifacts: Sequence[Artifact], folder: Path, out: Path | None) -> tuple[Path, ...]:
    if out is None:
        return ()
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for artifact in artifacts:
        target = out / Path(artifact.path).name
        shutil.copy2(folder / artifact.path, target)
        copied.append(target)
    return tuple(copied)


# -- the container part -------------------------------------------------------------------------
class _Runner:
    """Runs rpmbuild steps in containers under one deadline, everything into build.log."""

    def __init__(self, client: container.Client, buildlog: _Log, deadline: float, planned: BuildPlan) -> None:
        self.client = client
        self.log = buildlog
        self.deadline = deadline
        self.planned = planned

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise StepTimeoutError("the build ran out of time before its next step")
        return left

    def box(self, image_tag: str) -> container.BuildContainer:
        options = self.planned.options
        return container.BuildContainer(
            self.client,
            container.ContainerOptions(
                image=image_tag,
                workdir=TOPDIR,
                keep=options.keep_container,
                role="build",
                environment=dict(options.environment),
                mounts=options.mounts,
            ),
        )

    def run(self, box: container.BuildContainer, argv: list[str]) -> container.ExecResult:
        self.log.write(f"+ {shlex.join(argv)}")
        start = time.monotonic()
        # stderr joins stdout inside the container so build.log keeps rpmbuild's own order;
        # a family image's environment (opam, the stack limit) is sourced first.
        prelude = f"[ ! -r {ENV_SCRIPT} ] || . {ENV_SCRIPT}; "
        merged = ["sh", "-c", prelude + 'exec "$@" 2>&1', "sh", *argv]
        result = box.exec(merged, timeout=self.remaining(), workdir=TOPDIR, on_line=self.log.write, check=False)
        self.log.steps.append(StepRun(tuple(argv), result.exit_code, round(time.monotonic() - start, 3)))
        if result.exit_code != 0:
            raise ContainerStepError(f"`{shlex.join(argv)}` exited with status {result.exit_code}")
        return result

    def rpmbuild(self, *args: str, extra: bool = True) -> list[str]:
        """rpmbuild with the topdir, %dist, the package's --defines and (``extra``) --rpmbuild-opts."""
        argv = ["rpmbuild", "--define", f"_topdir {TOPDIR}"]
        dist = self.planned.package.target.dist_macro
        if dist:
            argv += ["--define", f"dist {dist}"]
        for name, value in self.planned.package.defines:
            argv += ["--define", f"{name} {value}"]
        if extra:
            argv += list(self.planned.options.rpmbuild_opts)
        return [*argv, *args]

    def binary_step(self, srpm: str) -> tuple[list[str], str]:
        letter = self.planned.options.rpmbuild_stage
        # As xcp-ng-build-env: `--target RPMARCH`, the image's architecture (x86_64_v2 on 9.x).
        arch = self.planned.package.target.rpm_arch
        rpm_target = ["--target", arch] if arch else []
        if letter is None:
            return self.rpmbuild("--rebuild", *rpm_target, srpm), "rpmbuild --rebuild (binary RPMs from the SRPM)"
        title = f"rpmbuild -r{letter} (--rpmbuild-stage {letter} on the SRPM)"
        return self.rpmbuild(f"-r{letter}", *rpm_target, srpm), title


def check_repo_names(target: Target, names: Sequence[str], given: givenrepos.GivenRepos | None) -> None:
    """--enablerepo/--disablerepo must name a repository of the image (or a glob, as dnf and yum take)."""
    if target.env is None or not names:
        return
    known = [*target.env.repo_ids, *(r.repo_id for r in (given.repos if given else ()))]
    for name in names:
        if not any(ch in name for ch in "*?[") and name not in known:
            close = difflib.get_close_matches(name, known, n=2)
            raise UsageError(
                f"target {target.name} has no repository `{name}`"
                + (f"; did you mean {' or '.join(close)}?" if close else ""),
                hint=f"its repositories: {', '.join(known)}",
            )


def builddep_command(planned: BuildPlan) -> str:
    """The layer's RUN: the SRPM's BuildRequires installed by the target's tool, from its
    repositories plus the given ones (or, on a target with none of its own, only those)."""
    options, target, given = planned.options, planned.package.target, planned.given
    flags = [f"--enablerepo={r}" for r in options.enablerepo] + [f"--disablerepo={r}" for r in options.disablerepo]
    if given is not None:
        own = "" if target.builddeps_only_from_given else "/etc/yum.repos.d,"
        flags.append(f"--setopt=reposdir={own}{givenrepos.INSIDE}")
    srpm = "/tmp/package.src.rpm"
    if target.builddeps == "yum-builddep":
        install, clean = f"yum-builddep -y {' '.join(flags)} {srpm}", "yum clean all"
    else:
        # Debian's dnf finds no release package to read $releasever from: it is the target's.
        release = [f"--releasever={target.xcpng_release}"] if target.builddeps_only_from_given else []
        install = f"dnf builddep -y {' '.join([*release, '--setopt=install_weak_deps=0', *flags])} {srpm}"
        clean = "dnf clean all"
    return f"{install} && {clean} && rm -rf {srpm} {givenrepos.INSIDE}"


def _deps_image(client: container.Client, planned: BuildPlan, *, image_id: str, srpm: Path, buildlog: _Log) -> str:
    """An image adding the SRPM's BuildRequires to the target image (see ``builddep_command``).

    The layer's output goes into build.log; when the install fails, dnf's (or yum's) own
    reason, e.g. ``No matching package to install: 'libfoo-devel'``, is the error's line.
    """
    options, given = planned.options, planned.given
    repos = [f"--enablerepo={r}" for r in options.enablerepo] + [f"--disablerepo={r}" for r in options.disablerepo]
    wanted = sorted(planned.build_requires)
    keyed: list[Any] = [image_id, wanted, sha256_file(srpm), repos]
    if given is not None:
        keyed.append(given.keyed())
    key = hashlib.sha256(json.dumps(keyed).encode()).hexdigest()[:16]
    target = planned.package.target
    tag = f"{image.repository(target)}-deps:{key}"
    if container.image_id(client, tag) is not None:
        return tag
    if options.no_update:
        raise UsageError(
            f"--no-update: the build-dependency image {tag} for this SRPM does not exist yet",
            hint="run once without --no-update to install the BuildRequires",
        )
    with owned.tempdir("deps") as context:
        shutil.copy2(srpm, context / "package.src.rpm")
        copy_given = ""
        if given is not None:
            given.stage(context)
            copy_given = f"COPY given/ {givenrepos.INSIDE}/\n"
        (context / "Dockerfile").write_text(
            "ARG BASE\nFROM ${BASE}\nUSER root\nCOPY package.src.rpm /tmp/package.src.rpm\n"
            f"{copy_given}RUN {builddep_command(planned)}\nUSER builder\n"
        )
        buildlog.write(f"# install BuildRequires into {tag}: {builddep_command(planned)}")
        output: list[str] = []

        def on_line(line: str) -> None:
            line = dnf.without_ansi(line)
            output.append(line)
            buildlog.write(line)

        with step(f"install BuildRequires into {tag}"):
            try:
                container.build_image(
                    client,
                    context,
                    tag,
                    buildargs={"BASE": planned.image_tag},
                    # Offline targets install only from the copied repositories, with no network.
                    host_network=target.build_network,
                    on_line=on_line,
                    labels={image.TARGET_LABEL: target.name},
                )
            except ContainerStepError as exc:
                tool = "yum-builddep" if target.builddeps == "yum-builddep" else "dnf builddep"
                reason = dnf.install_failure("\n".join(output))
                buildlog.write(f"# {tool} failed: {reason}")
                raise BuildError(
                    f"{tool} could not install the BuildRequires of {planned.package.name}: {reason}",
                    hint="build and publish what is missing and give its repository (--repo-url/--local-repo, "
                    f"--enablerepo for a channel of the image), or fix the BuildRequires; {tool}'s whole output "
                    f"is in {buildlog.handle.name}",
                ) from exc
    return tag


def _in_container(planned: BuildPlan, *, image_id: str, folder: Path, runner: _Runner) -> tuple[list[Path], bool]:
    """Run the build; return the artifact paths copied into ``folder`` and whether %prep was checked."""
    options = planned.options
    specfile = f"SPECS/{planned.spec.filename}"
    letter = options.rpmbuild_stage
    second = options.stage == "rpm" and letter != "s"
    binaries = options.stage == "rpm" and (letter is None or makes_binaries(letter))
    here = not planned.needs_deps_image
    prep_checked = False
    with runner.box(planned.image_tag) as box:
        runner.log.write(f"# container {box.name} from {planned.image_tag} ({image_id})")
        box.put(planned.files, TOPDIR / "SOURCES")
        box.put_bytes({planned.spec.filename: planned.spec.text.encode()}, TOPDIR / "SPECS")
        with step("rpmbuild -bs (SRPM)"):
            runner.run(box, runner.rpmbuild("-bs", "--nodeps", specfile))
        srpms = box.glob(TOPDIR / "SRPMS", "*.src.rpm")
        if len(srpms) != 1:
            raise ContainerStepError(f"rpmbuild -bs made {len(srpms)} source packages, not one: {srpms}")
        srpm_in = str(srpms[0])
        if options.stage == "srpm":
            with step("rpmbuild -rp --nodeps (%prep from the SRPM: the patches apply)"):
                runner.run(box, runner.rpmbuild("-rp", "--nodeps", srpm_in, extra=False))
            prep_checked = True
        elif second and here:
            argv, title = runner.binary_step(srpm_in)
            with step(title):
                runner.run(box, argv)
            prep_checked = letter in (None, "a", "b", "p", "c", "i")
        produced = box.get(TOPDIR / "SRPMS", folder)
        if second and here and binaries:
            produced += box.get(TOPDIR / "RPMS", folder)
    if second and not here:
        srpm = next(p for p in produced if p.name.endswith(".src.rpm"))
        deps_tag = _deps_image(runner.client, planned, image_id=image_id, srpm=srpm, buildlog=runner.log)
        with runner.box(deps_tag) as box:
            runner.log.write(f"# container {box.name} from {deps_tag}")
            box.put([srpm], TOPDIR / "SRPMS")
            argv, title = runner.binary_step(str(TOPDIR / "SRPMS" / srpm.name))
            with step(title):
                runner.run(box, argv)
            if binaries:
                produced += box.get(TOPDIR / "RPMS", folder)
        prep_checked = letter in (None, "a", "b", "p", "c", "i")
    return [p for p in produced if p.name.endswith(".rpm")], prep_checked


def _artifacts(folder: Path, paths: Sequence[Path]) -> tuple[Artifact, ...]:
    out = []
    for path in sorted(paths):
        header = rpmheader.read(path)
        out.append(
            Artifact(
                path=path.relative_to(folder).as_posix(),
                kind="srpm" if header.is_source else "rpm",
                nevra=header.nevra,
                sha256=header.sha256,
            )
        )
    return tuple(out)


def _fail_message(what: str, folder: Path, buildlog: _Log) -> str:
    tail = "\n".join(f"    {line}" for line in buildlog.lines[-TAIL_LINES:])
    return f"{what}; last lines of {folder / LOG}:\n{tail}"


def _image_id(settings: Settings, planned: BuildPlan, client: container.Client) -> str:
    if not planned.options.no_update:
        return image.build(settings, planned.target, client=client).image_id
    found = container.image_id(client, planned.image_tag)
    if found is None:
        raise UsageError(
            f"--no-update: the image {planned.image_tag} of target {planned.target} is not built",
            hint=f"build it once with `xcpbuild image build {planned.target}`",
        )
    return found


def run(settings: Settings, planned: BuildPlan, image_id: str, client: container.Client) -> BuildResult:
    """Build ``planned`` in containers of the image ``image_id``; the record says how it ended."""
    options, package = planned.options, planned.package
    start = time.monotonic()
    key = planned.key(image_id)
    folder = planned.folder(key)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / planned.spec.filename).write_text(planned.spec.text)
    record = BuildRecord(
        package=package.name,
        version=planned.spec.version,
        release=planned.spec.release,
        target=planned.target,
        dist=package.target.dist,
        stage=options.stage,
        key=key,
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        image_tag=planned.image_tag,
        image_id=image_id,
        source=planned.source,
        inputs=planned.inputs,
        spec=planned.spec.text,
        options=planned.keyed(),
    )
    write_record(folder, record)
    with (folder / LOG).open("w") as handle:
        buildlog = _Log(handle)
        buildlog.write(f"# xcpbuild build {planned.title} for {planned.target}")
        buildlog.write(f"# key {key}, stage {options.stage}, time limit {options.timeout:.0f}s")
        runner = _Runner(client, buildlog, start + options.timeout, planned)
        try:
            with step(f"build {planned.title} in {planned.image_tag}"):
                paths, prep_checked = _in_container(planned, image_id=image_id, folder=folder, runner=runner)
        except XcpbuildError as exc:
            failure = _translate(exc, planned, folder, buildlog)
            write_record(folder, record.finished(status="failed", error=failure.message, steps=tuple(buildlog.steps)))
            raise failure from exc
    record = record.finished(
        status="ok",
        prep_checked=prep_checked,
        steps=tuple(buildlog.steps),
        seconds=round(time.monotonic() - start, 3),
        outputs=_artifacts(folder, paths),
    )
    write_record(folder, record)
    return BuildResult(folder, key, False, record, _copy_out(record.outputs, folder, options.out))


def build(
    settings: Settings,
    package: Package,
    options: BuildOptions | None = None,
    *,
    client: container.Client | None = None,
) -> BuildResult:
    """Build the resolved ``package`` for its target, or reuse the recorded result of the same inputs."""
    result = _build_or_reuse(settings, package, options, client=client)
    provenance.ensure(settings, package, result.folder, result.record)
    return result


@contextlib.contextmanager
def _planned(settings: Settings, package: Package, options: BuildOptions | None) -> Iterator[BuildPlan]:
    """The build plan of these inputs, its sources staged in a folder that lives as long as the block."""
    options = options or BuildOptions()
    options.check()
    builds = settings.work_dir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    with owned.tempdir(".staging", parent=builds) as staging:
        sources_dir = staging / "SOURCES"
        sources_dir.mkdir()
        yield plan(settings, package, options, sources_dir)


def _build_or_reuse(
    settings: Settings,
    package: Package,
    options: BuildOptions | None = None,
    *,
    client: container.Client | None = None,
) -> BuildResult:
    with _planned(settings, package, options) as planned:
        # First with the image id remembered in the cache: a hit then needs no engine at all.
        recorded = image.recorded_id(settings, planned.image_tag)
        hit = reuse(planned, recorded) if recorded is not None else None
        if hit is not None:
            return hit
        engine_client = client if client is not None else container.get_client()
        image_id = _image_id(settings, planned, engine_client)
        hit = reuse(planned, image_id)
        if hit is not None:
            return hit
        return run(settings, planned, image_id, engine_client)


def recorded(settings: Settings, package: Package, options: BuildOptions | None = None) -> BuildResult | None:
    """The build ``build`` would reuse for these inputs and options (None: not built yet); no engine asked."""
    with _planned(settings, package, options) as planned:
        image_id = image.recorded_id(settings, planned.image_tag)
        return reuse(planned, image_id) if image_id is not None else None


def _translate(exc: XcpbuildError, planned: BuildPlan, folder: Path, buildlog: _Log) -> XcpbuildError:
    """Say what failed in the user's terms: a time limit, a patch that does not apply, or rpmbuild."""
    options, name = planned.options, planned.package.name
    if isinstance(exc, StepTimeoutError):
        fate = "kept for inspection (--keep-container)" if options.keep_container else "killed and removed"
        buildlog.write(f"# time limit of {options.timeout:.0f}s exceeded; container {fate}")
        return StepTimeoutError(
            f"the build of {name} for {planned.target} exceeded its {options.timeout:.0f}s time limit; "
            f"its container was {fate} (log: {folder / LOG})"
        )
    if isinstance(exc, ContainerStepError):
        patch = failing_patch(buildlog.lines, planned.spec.patches)
        if patch is not None:
            return PatchError(
                _fail_message(f"patch {patch} does not apply to {name} {planned.spec.version}", folder, buildlog),
                hint=f"refresh it against the new upstream (`xcpbuild patch check {planned.package.cli_name}`) "
                f"or drop it from the series",
            )
        return BuildError(_fail_message(f"{exc.message} while building {name}", folder, buildlog))
    return exc
