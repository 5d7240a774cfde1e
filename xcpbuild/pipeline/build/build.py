"""Builds: sources, patches and a rendered spec in; SRPM, RPMs, a log and a record out.

A build stages every input on the host (the upstream tarball or a tarball of
this project's files, extra sources, the patch series, the rendered spec) and
hashes them. The cache key is a sha256 over those hashes, the image (tag and
id), the stage and the target, so the key is known before any container runs:
when a finished build folder with that key holds a good record and its
artifacts, the result is reused and no container is started (nor the engine
asked). Otherwise, in a container of the target's image (network none, uid
1000, one time limit for the whole build):

1. ``rpmbuild -bs`` makes the SRPM;
2. ``--stage srpm``: ``rpmbuild -rp --nodeps`` on that SRPM proves %prep
   (rpmbuild applying the patches itself) works;
   ``--stage rpm``: ``rpmbuild --rebuild`` the SRPM (on yum-builddep targets in
   an image that adds the SRPM's BuildRequires, installed with the host's
   network while that image is built, never during the build).

The folder ``WORK/builds/NAME-VERSION-RELEASE-TARGET-KEY12/`` keeps
``build.log`` (all the container printed), ``build-record.json``, the rendered
spec and ``SRPMS/``, ``RPMS/``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shlex
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from xcpbuild.adapters import container, rpmheader
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
from xcpbuild.model.package import PackageDef, find_package, read_series
from xcpbuild.model.target import Target, find_target
from xcpbuild.pipeline.build import image, spec
from xcpbuild.pipeline.sources import project as project_source
from xcpbuild.pipeline.sources import source

log = get_logger("build")

RECORD = "build-record.json"
LOG = "build.log"
SCHEME = 1
STAGES = ("srpm", "rpm")
DEFAULT_TIMEOUT = 3600.0
TOPDIR = "/home/builder/rpmbuild"
TAIL_LINES = 15


@dataclass(frozen=True)
class Input:
    name: str
    role: str  # "source", "patch" or "spec"
    sha256: str


@dataclass(frozen=True)
class Artifact:
    path: str  # relative to the build folder: SRPMS/x.src.rpm, RPMS/noarch/x.noarch.rpm
    kind: str  # "srpm" or "rpm"
    nevra: str
    sha256: str


@dataclass(frozen=True)
class BuildResult:
    folder: Path
    key: str
    reused: bool
    record: dict[str, Any]
    artifacts: tuple[Artifact, ...]
    copied: tuple[Path, ...] = ()

    def paths(self) -> list[Path]:
        return [self.folder / a.path for a in self.artifacts]


@dataclass
class _Staged:
    """Inputs on the host, ready to go into a container."""

    package: PackageDef
    target: Target
    version: str
    release: str
    spec: spec.RenderedSpec
    files: list[Path]  # SOURCES: tarball, extra sources, patches
    inputs: list[Input]
    source_info: dict[str, Any]


@dataclass
class _Log:
    """build.log plus the steps run, for the record."""

    handle: IO[str]
    steps: list[dict[str, Any]] = field(default_factory=list)
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


def cache_key(inputs: Sequence[Input], image_tag: str, image_id: str, stage: str, target: str) -> str:
    """sha256 over every input's sha256, the image, the stage and the target (order-independent)."""
    payload = {
        "scheme": SCHEME,
        "inputs": sorted((i.role, i.name, i.sha256) for i in inputs),
        "image": [image_tag, image_id],
        "stage": stage,
        "target": target,
    }
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


# -- staging ------------------------------------------------------------------------------------
def _stage(
    settings: Settings,
    package: PackageDef,
    target: Target,
    sources_dir: Path,
    *,
    upstream: str | None,
    ref: str | None,
) -> _Staged:
    pin = package.pin(target.name)
    if package.source_kind == "project":
        if upstream or ref:
            raise UsageError(f"package {package.name} is made from this project's files; --upstream/--ref do not apply")
        fetched_project = project_source.fetch(settings, package, target.name, sources_dir)
        tarball, tar_sha, version = fetched_project.tarball, fetched_project.sha256, fetched_project.version
        source_info: dict[str, Any] = {"kind": "project", "paths": list(package.project_paths)}
    else:
        fetched = source.fetch(settings, package, target=target.name, upstream=upstream, ref=ref, out_dir=sources_dir)
        tarball, tar_sha, version = fetched.tarball, fetched.sha256, fetched.version
        source_info = {
            "kind": "git",
            "upstream": _without_credentials(upstream or package.upstream or ""),
            "ref": fetched.ref,
            "commit": fetched.commit,
        }
    files = [tarball]
    inputs = [Input(tarball.name, "source", tar_sha)]
    for name in package.extra_sources:
        extra = package.extra_sources_dir / name
        if not extra.is_file():
            raise ConfigError(
                f"extra source {name} of {package.name} is missing", hint=f"put it in {package.extra_sources_dir}/"
            )
        shutil.copy2(extra, sources_dir / name)
        files.append(sources_dir / name)
        inputs.append(Input(name, "source", sha256_file(extra)))
    for patch in read_series(settings.patches_dir, package.name, pin.series):
        shutil.copy2(patch, sources_dir / patch.name)
        files.append(sources_dir / patch.name)
        inputs.append(Input(patch.name, "patch", sha256_file(patch)))
    rendered = spec.render(settings, package.name, target.name, version=version, tarball=tarball.name)
    inputs.append(Input(rendered.filename, "spec", hashlib.sha256(rendered.text.encode()).hexdigest()))
    return _Staged(package, target, version, rendered.release, rendered, files, inputs, source_info)


# -- reuse --------------------------------------------------------------------------------------
def load_record(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _reusable(folder: Path, key: str) -> tuple[dict[str, Any], tuple[Artifact, ...]] | None:
    record = load_record(folder)
    if record is None or record.get("status") != "ok" or record.get("key") != key:
        return None
    artifacts = tuple(Artifact(**a) for a in record.get("outputs", []))
    for artifact in artifacts:
        path = folder / artifact.path
        if not path.is_file() or sha256_file(path) != artifact.sha256:
            log.info("cached build %s lost %s; building again", folder.name, artifact.path)
            return None
    return record, artifacts


def _lookup(
    builds: Path, staged: _Staged, stage: str, image_tag: str, image_id: str
) -> tuple[str, Path, tuple[dict[str, Any], tuple[Artifact, ...]] | None]:
    """The key and folder of this build, and its record and artifacts when they can be reused."""
    key = cache_key(staged.inputs, image_tag, image_id, stage, staged.target.name)
    folder = builds / folder_name(staged.package.name, staged.version, staged.release, staged.target.name, key)
    hit = _reusable(folder, key)
    if hit is not None:
        log.info("reusing %s (same inputs, image and stage)", folder)
    return key, folder, hit


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

    def __init__(self, client: container.Client, buildlog: _Log, deadline: float, keep: bool) -> None:
        self.client = client
        self.log = buildlog
        self.deadline = deadline
        self.keep = keep

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise StepTimeoutError("the build ran out of time before its next step")
        return left

    def run(self, box: container.BuildContainer, argv: list[str]) -> container.ExecResult:
        self.log.write(f"+ {shlex.join(argv)}")
        start = time.monotonic()
        # stderr joins stdout inside the container so build.log keeps rpmbuild's own order.
        merged = ["sh", "-c", 'exec "$@" 2>&1', "sh", *argv]
        result = box.exec(merged, timeout=self.remaining(), workdir=TOPDIR, on_line=self.log.write, check=False)
        self.log.steps.append(
            {"argv": argv, "exit_code": result.exit_code, "seconds": round(time.monotonic() - start, 3)}
        )
        if result.exit_code != 0:
            raise ContainerStepError(f"`{shlex.join(argv)}` exited with status {result.exit_code}")
        return result


def _rpmbuild(*args: str, dist: str) -> list[str]:
    argv = ["rpmbuild", "--define", f"_topdir {TOPDIR}"]
    if dist:
        argv += ["--define", f"dist {dist}"]
    return [*argv, *args]


def _deps_image(client: container.Client, staged: _Staged, *, image_tag: str, image_id: str, srpm: Path) -> str:
    """An image adding the SRPM's BuildRequires to the target image (yum-builddep with the host's network)."""
    wanted = sorted(build_requires(staged.spec.text))
    key = hashlib.sha256(json.dumps([image_id, wanted, sha256_file(srpm)]).encode()).hexdigest()[:16]
    tag = f"{image.repository(staged.target)}-deps:{key}"
    if container.image_id(client, tag) is not None:
        return tag
    with tempfile.TemporaryDirectory(prefix="xcpbuild-deps-") as tmp:
        context = Path(tmp)
        shutil.copy2(srpm, context / "package.src.rpm")
        (context / "Dockerfile").write_text(
            "ARG BASE\nFROM ${BASE}\nUSER root\nCOPY package.src.rpm /tmp/package.src.rpm\n"
            "RUN yum-builddep -y /tmp/package.src.rpm && yum clean all && rm -f /tmp/package.src.rpm\n"
            "USER builder\n"
        )
        with step(f"install BuildRequires into {tag}"):
            container.build_image(
                client,
                context,
                tag,
                buildargs={"BASE": image_tag},
                host_network=True,
                on_line=lambda line: log.debug("docker build: %s", line),
                labels={image.TARGET_LABEL: staged.target.name},
            )
    return tag


def _in_container(
    staged: _Staged,
    stage: str,
    *,
    image_tag: str,
    image_id: str,
    folder: Path,
    runner: _Runner,
) -> tuple[list[Path], bool]:
    """Run the build; return the artifact paths copied into ``folder`` and whether %prep was checked."""
    dist = staged.target.dist_macro
    specfile = f"SPECS/{staged.spec.filename}"
    options = container.ContainerOptions(image=image_tag, workdir=TOPDIR, keep=runner.keep, role="build")
    binary_here = stage == "rpm" and staged.target.builddeps == "none"
    prep_checked = False
    with container.BuildContainer(runner.client, options) as box:
        runner.log.write(f"# container {box.name} from {image_tag} ({image_id})")
        box.put(staged.files, f"{TOPDIR}/SOURCES")
        box.put_bytes({staged.spec.filename: staged.spec.text.encode()}, f"{TOPDIR}/SPECS")
        with step("rpmbuild -bs (SRPM)"):
            runner.run(box, _rpmbuild("-bs", "--nodeps", specfile, dist=dist))
        srpm_glob = box.exec(["sh", "-c", f"ls {TOPDIR}/SRPMS/*.src.rpm"], timeout=60).output.split()
        srpm_in = srpm_glob[0]
        if stage == "srpm":
            with step("rpmbuild -rp --nodeps (%prep from the SRPM: the patches apply)"):
                runner.run(box, _rpmbuild("-rp", "--nodeps", srpm_in, dist=dist))
            prep_checked = True
        elif binary_here:
            with step("rpmbuild --rebuild (binary RPMs from the SRPM)"):
                runner.run(box, _rpmbuild("--rebuild", srpm_in, dist=dist))
            prep_checked = True
        produced = box.get(f"{TOPDIR}/SRPMS", folder)
        if binary_here:
            produced += box.get(f"{TOPDIR}/RPMS", folder)
    if stage == "rpm" and not binary_here:
        srpm = next(p for p in produced if p.name.endswith(".src.rpm"))
        deps_tag = _deps_image(runner.client, staged, image_tag=image_tag, image_id=image_id, srpm=srpm)
        options = container.ContainerOptions(image=deps_tag, workdir=TOPDIR, keep=runner.keep, role="build")
        with container.BuildContainer(runner.client, options) as box:
            runner.log.write(f"# container {box.name} from {deps_tag}")
            box.put([srpm], f"{TOPDIR}/SRPMS")
            with step("rpmbuild --rebuild (binary RPMs from the SRPM)"):
                runner.run(box, _rpmbuild("--rebuild", f"{TOPDIR}/SRPMS/{srpm.name}", dist=dist))
            produced += box.get(f"{TOPDIR}/RPMS", folder)
        prep_checked = True
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


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    partial = folder / (RECORD + ".partial")
    partial.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    partial.replace(folder / RECORD)


def _fail_message(what: str, folder: Path, buildlog: _Log) -> str:
    tail = "\n".join(f"    {line}" for line in buildlog.lines[-TAIL_LINES:])
    return f"{what}; last lines of {folder / LOG}:\n{tail}"


def build(
    settings: Settings,
    pkg_name: str,
    target: str,
    *,
    upstream: str | None = None,
    stage: str = "rpm",
    out: Path | None = None,
    keep_container: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    ref: str | None = None,
    client: container.Client | None = None,
) -> BuildResult:
    """Build ``pkg_name`` for ``target`` up to ``stage``, or reuse the recorded result of the same inputs."""
    if stage not in STAGES:
        raise UsageError(f"unknown stage `{stage}` (choose {' or '.join(STAGES)})")
    if timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    package = find_package(settings.specs_dir, pkg_name)
    tgt = find_target(settings.containers_dir, target)
    builds = settings.work_dir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=builds) as staging:
        sources_dir = Path(staging) / "SOURCES"
        sources_dir.mkdir()
        with step(f"stage {package.name} for {tgt.name}"):
            staged = _stage(settings, package, tgt, sources_dir, upstream=upstream, ref=ref)
        if stage == "rpm" and tgt.builddeps == "none" and build_requires(staged.spec.text):
            needs = ", ".join(build_requires(staged.spec.text)[:5])
            raise UsageError(
                f"{package.name} needs EL build dependencies ({needs}) that target {tgt.name} cannot install",
                hint=f"build the SRPM here with --stage srpm, or the RPMs on an xcp-ng-* target "
                f"(--target xcp-ng-{tgt.xcpng_release})",
            )
        image_tag = image.plan(settings, tgt.name).tag
        # First with the image id remembered in the cache: a hit then needs no engine at all.
        image_id = image.recorded_id(settings, image_tag)
        if image_id is not None:
            key, folder, hit = _lookup(builds, staged, stage, image_tag, image_id)
            if hit is not None:
                return BuildResult(folder, key, True, hit[0], hit[1], _copy_out(hit[1], folder, out))
        engine_client = client if client is not None else container.get_client()
        image_id = image.build(settings, tgt.name, client=engine_client).image_id
        key, folder, hit = _lookup(builds, staged, stage, image_tag, image_id)
        if hit is not None:
            return BuildResult(folder, key, True, hit[0], hit[1], _copy_out(hit[1], folder, out))
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        (folder / staged.spec.filename).write_text(staged.spec.text)
        record: dict[str, Any] = {
            "schema": SCHEME,
            "status": "running",
            "package": package.name,
            "version": staged.version,
            "release": staged.release,
            "target": tgt.name,
            "dist": tgt.dist,
            "stage": stage,
            "key": key,
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "image": {"tag": image_tag, "id": image_id},
            "source": staged.source_info,
            "inputs": [asdict(i) for i in staged.inputs],
            "spec": staged.spec.text,
            "outputs": [],
        }
        with (folder / LOG).open("w") as handle:
            buildlog = _Log(handle)
            buildlog.write(f"# xcpbuild build {package.name} {staged.version}-{staged.release} for {tgt.name}")
            buildlog.write(f"# key {key}, stage {stage}, time limit {timeout:.0f}s")
            runner = _Runner(engine_client, buildlog, start + timeout, keep_container)
            try:
                with step(f"build {package.name} {staged.version}-{staged.release} in {image_tag}"):
                    paths, prep_checked = _in_container(
                        staged, stage, image_tag=image_tag, image_id=image_id, folder=folder, runner=runner
                    )
            except XcpbuildError as exc:
                failure = _translate(exc, staged, folder, buildlog, timeout=timeout, keep=keep_container)
                record.update(status="failed", error=failure.message, steps=buildlog.steps)
                _write_record(folder, record)
                raise failure from exc
        artifacts = _artifacts(folder, paths)
        record.update(
            status="ok",
            prep_checked=prep_checked,
            steps=buildlog.steps,
            seconds=round(time.monotonic() - start, 3),
            outputs=[asdict(a) for a in artifacts],
        )
        _write_record(folder, record)
    return BuildResult(folder, key, False, record, artifacts, _copy_out(artifacts, folder, out))


def _translate(
    exc: XcpbuildError, staged: _Staged, folder: Path, buildlog: _Log, *, timeout: float, keep: bool
) -> XcpbuildError:
    """Say what failed in the user's terms: a time limit, a patch that does not apply, or rpmbuild."""
    if isinstance(exc, StepTimeoutError):
        fate = "kept for inspection (--keep-container)" if keep else "killed and removed"
        buildlog.write(f"# time limit of {timeout:.0f}s exceeded; container {fate}")
        return StepTimeoutError(
            f"the build of {staged.package.name} for {staged.target.name} exceeded its {timeout:.0f}s time limit; "
            f"its container was {fate} (log: {folder / LOG})"
        )
    if isinstance(exc, ContainerStepError):
        patch = failing_patch(buildlog.lines, staged.spec.patches)
        if patch is not None:
            return PatchError(
                _fail_message(
                    f"patch {patch} does not apply to {staged.package.name} {staged.version}", folder, buildlog
                ),
                hint=f"refresh it against the new upstream (`xcpbuild patch check {staged.package.name}`) "
                f"or drop it from the series",
            )
        return BuildError(_fail_message(f"{exc.message} while building {staged.package.name}", folder, buildlog))
    return exc
