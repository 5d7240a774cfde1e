"""Build environments: one image per target, built once and reused while its inputs are unchanged.

An image's tag is a hash of everything that goes into it: the files of
``containers/TARGET/``, the build arguments and, for ``local``, the key of its
bootstrapped base (suite, mirror, package list). So the tag can be computed
without the engine, and the same inputs always name the same image.

The ``local`` base is made with mmdebstrap from this machine's Debian mirror,
packed and imported as ``xcpbuild-base:KEY``; its tarball is kept in the cache so
an engine that lost its images re-imports it instead of bootstrapping again.
A small record per image (``CACHE/images/TAG.json``) remembers the image id, so
a build whose result is cached never has to ask the engine.

A family target (``family = "el7"``) is built from its family's folder plus the
``rendered/`` files of :mod:`environment` (its repositories, macros and the
environment sourced before rpmbuild), copied together into a temporary context;
the tag hashes both. ``XCPBUILD_BASE_IMAGES`` maps a base image a target names
to one already in the engine, which is then used as it is, never pulled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from xcpbuild.adapters import container, dnf, rootfs
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError, ContainerStepError
from xcpbuild.log import get_logger, step
from xcpbuild.model.target import Target, find_target
from xcpbuild.pipeline.build import environment

log = get_logger("image")

# Bump when the way images are made changes in a way the inputs do not show.
SCHEME = "1"
# The same for a bootstrapped base alone. 2: made with mmdebstrap, without docs, unpacked with force-unsafe-io.
BASE_SCHEME = "2"
BASE_REPOSITORY = "xcpbuild-base"
TARGET_LABEL = "org.xcpbuild.target"
KEY_LABEL = "org.xcpbuild.key"
BASE_PATH = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class BaseSpec:
    """What a bootstrapped base is made from; its key names the image and the cached tarball."""

    suite: str
    mirror: str
    include: tuple[str, ...]

    @property
    def key(self) -> str:
        text = json.dumps({"scheme": BASE_SCHEME, "suite": self.suite, "mirror": self.mirror, "include": self.include})
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"{BASE_REPOSITORY}:{self.key}"


@dataclass(frozen=True)
class ImagePlan:
    """Everything that decides a target's image, computed without the engine."""

    target: Target
    key: str
    tag: str
    build_args: tuple[tuple[str, str], ...]
    base: BaseSpec | None
    rendered: environment.RenderedEnv | None = None  # a family target's rendered/ files
    local_base: bool = False  # the base is an image of the engine (XCPBUILD_BASE_IMAGES): never pulled


@dataclass(frozen=True)
class ImageResult:
    target: str
    tag: str
    image_id: str
    base: str
    reused: bool
    seconds: float


def repository(target: Target) -> str:
    return f"xcpbuild-{target.name}"


def context_digest(context_dir: Path) -> str:
    """sha256 over the build context: each file's relative path, exec bit and content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(context_dir).as_posix()
        executable = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"{rel}\0{executable}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def _user_build_args(settings: Settings, target: Target) -> list[tuple[str, str]]:
    values = []
    for arg, variable in target.build_args:
        value = settings.variable(variable)
        if not value:
            raise ConfigError(
                f"target {target.name} needs ${variable} (its {arg} build argument)",
                hint=f"export {variable}=URL of your mirror; or build offline with --target local",
            )
        values.append((arg, value))
    return values


def plan(settings: Settings, target_name: str) -> ImagePlan:
    """The image a target would build and its tag (no engine needed)."""
    target = find_target(settings.containers_dir, target_name)
    suite = target.debootstrap_suite
    base: BaseSpec | None = None
    variables = dict(settings.variables)
    local_images = environment.base_images(variables)
    if suite is not None:
        base = BaseSpec(suite=suite, mirror=rootfs.debian_mirror(suite), include=target.debootstrap_include)
        base_ref = base.tag
    else:
        base_ref = local_images.get(target.base_image, target.base_image)
    rendered = None
    if target.env is not None:
        rendered = environment.render(target, variables, base_ref)
        args = list(rendered.build_args)
    else:
        args = [("BASE", base_ref), ("DIST", target.dist_macro), ("XCPNG_RELEASE", target.xcpng_release)]
    args += _user_build_args(settings, target)
    found: dict[str, object] = {"scheme": SCHEME, "context": context_digest(target.context_dir), "args": args}
    if rendered is not None:
        found["rendered"] = [(name, hashlib.sha256(data).hexdigest()) for name, data in rendered.files]
    key = hashlib.sha256(json.dumps(found).encode()).hexdigest()[:16]
    return ImagePlan(
        target=target,
        key=key,
        tag=f"{repository(target)}:{key}",
        build_args=tuple(args),
        base=base,
        rendered=rendered,
        local_base=target.base_image in local_images,
    )


def _record_path(settings: Settings, tag: str) -> Path:
    return settings.cache_dir / "images" / (tag.replace(":", "_").replace("/", "_") + ".json")


def recorded_id(settings: Settings, tag: str) -> str | None:
    """The image id last built or seen for ``tag`` (from the cache; the engine is not asked)."""
    path = _record_path(settings, tag)
    try:
        return str(json.loads(path.read_text())["image_id"])
    except (OSError, ValueError, KeyError):
        return None


def _remember(settings: Settings, result: ImageResult) -> None:
    path = _record_path(settings, result.tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer: concurrent verify checks remember the same image at once.
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(json.dumps(asdict(result), indent=2))
    partial.replace(path)


def ensure_base(settings: Settings, client: container.Client, base: BaseSpec) -> str:
    """The bootstrapped base's image id: present, re-imported from the cached tarball, or made now."""
    found = container.image_id(client, base.tag)
    if found is not None:
        return found
    tarball = settings.cache_dir / "rootfs" / f"{base.suite}-{base.key}.tar"
    if not tarball.exists():
        with step(f"mmdebstrap {base.suite} (minbase + {', '.join(base.include)}) from {base.mirror}"):
            rootfs.bootstrap(base.suite, base.mirror, base.include, tarball)
    with step(f"import {tarball.name} as {base.tag}"):
        return container.import_rootfs(
            client,
            tarball,
            BASE_REPOSITORY,
            base.key,
            changes=[BASE_PATH, f"LABEL {KEY_LABEL}={base.key}"],
        )


def build(
    settings: Settings, target_name: str, *, client: container.Client | None = None, force: bool = False
) -> ImageResult:
    """Build the target's image unless an image with the same inputs exists; return it."""
    start = time.monotonic()
    chosen = plan(settings, target_name)
    engine_client = client if client is not None else container.get_client()
    existing = None if force else container.image_id(engine_client, chosen.tag)
    base_ref = dict(chosen.build_args)["BASE"]
    if existing is not None:
        result = ImageResult(target_name, chosen.tag, existing, base_ref, True, time.monotonic() - start)
        _remember(settings, result)
        return result
    if chosen.local_base and container.image_id(engine_client, base_ref) is None:
        raise ConfigError(
            f"base image {base_ref} (given for {chosen.target.base_image} in ${environment.BASE_IMAGES}) "
            "is not in the engine",
            hint=f"load it first (docker load -i FILE, or docker tag IMAGE {base_ref})",
        )
    with (
        step(f"build image {chosen.tag} for target {target_name}"),
        tempfile.TemporaryDirectory(prefix="xcpbuild-context-") as tmp,
    ):
        context = chosen.target.context_dir
        if chosen.rendered is not None:
            # The family's files plus this target's rendered/ ones: one context per build.
            context = Path(tmp) / "context"
            shutil.copytree(chosen.target.context_dir, context)
            chosen.rendered.write(context)
        if chosen.base is not None:
            ensure_base(settings, engine_client, chosen.base)
        output: list[str] = []

        def on_line(line: str) -> None:
            output.append(dnf.without_ansi(line))
            log.debug("docker build: %s", line)

        try:
            image_id = container.build_image(
                engine_client,
                context,
                chosen.tag,
                buildargs=dict(chosen.build_args),
                host_network=chosen.target.build_network,
                on_line=on_line,
                labels={TARGET_LABEL: target_name, KEY_LABEL: chosen.key},
                pull=chosen.base is None and not chosen.local_base,
                platform=chosen.target.platform,
            )
        except ContainerStepError as exc:
            # The Dockerfile's RUN installs packages: dnf's (or yum's) own reason says what is wrong.
            reason = dnf.install_failure("\n".join(output))
            raise ContainerStepError(
                f"building image {chosen.tag} for target {target_name} failed: {reason}",
                hint=f"{exc.message}; rerun with --debug to see every line of the image build",
            ) from exc
    result = ImageResult(target_name, chosen.tag, image_id, base_ref, False, time.monotonic() - start)
    _remember(settings, result)
    return result


@dataclass(frozen=True)
class ImageRow:
    target: str
    tag: str
    image_id: str
    current: bool
    size_mb: float
    created: str


def list_images(settings: Settings, client: container.Client | None = None) -> list[ImageRow]:
    """xcpbuild's target images in the engine, marking those that match the current inputs."""
    engine_client = client if client is not None else container.get_client()
    current: dict[str, str] = {}
    rows = []
    for info in container.list_images(engine_client, TARGET_LABEL):
        target = info.labels.get(TARGET_LABEL, "?")
        if target not in current:
            try:
                current[target] = plan(settings, target).tag
            except ConfigError:
                current[target] = ""
        # Images built FROM ours inherit the label; list only our own repositories.
        own = (f"xcpbuild-{target}:", f"xcpbuild-{target}-deps:")
        for tag in info.tags:
            if not tag.startswith(own):
                continue
            rows.append(
                ImageRow(target, tag, info.id, tag == current[target], round(info.size / 1e6, 1), info.created[:19])
            )
    return sorted(rows, key=lambda r: (r.target, not r.current, r.created))
