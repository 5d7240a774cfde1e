"""Build containers and images through the Docker SDK.

``BuildContainer`` is the one way xcpbuild runs work in a container: created with
network off and a non-root user, files in and out by tar archive, steps run with
streamed output and a time limit, and always removed on exit unless ``keep``.
Docker SDK exceptions are translated into xcpbuild errors here.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import resource
import shlex
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Any

from xcpbuild.adapters import engine, owned, process
from xcpbuild.adapters.lazy import Lazy
from xcpbuild.errors import ContainerStepError, EngineError, StepTimeoutError, XcpbuildError
from xcpbuild.log import get_logger

if TYPE_CHECKING:
    import docker
    import docker.errors
    import docker.models.containers
    import docker.types
    import requests.exceptions
else:  # imported on first use: a reused build never talks to the engine
    docker = Lazy("docker", "errors", "models.containers", "types")
    requests = Lazy("requests", "exceptions")

log = get_logger("docker")

LABEL = "org.xcpbuild.role"
# Who made a container (``host/PID-START``), so the next run can remove what a killed one left.
OWNER_LABEL = "org.xcpbuild.owner"
# Kept for inspection (--keep-container): never swept.
KEEP_LABEL = "org.xcpbuild.keep"
DEFAULT_USER = "1000:1000"
DEFAULT_WORKDIR = PurePosixPath("/tmp")
_counter = itertools.count()

# The engine connection, for layers that may not import docker themselves (an opaque handle).
Client = engine.Engine


def _failures(*also: type[Exception]) -> tuple[type[Exception], ...]:
    """What the Docker SDK raises when the engine fails, and ``also`` (looked up only when something was raised)."""
    return (docker.errors.DockerException, requests.exceptions.RequestException, *also)


@dataclass(frozen=True)
class ExecResult:
    """A finished step: its command, exit code, output and duration."""

    argv: tuple[str, ...]
    exit_code: int
    output: str
    seconds: float


@dataclass
class ContainerOptions:
    """How a build container is created."""

    image: str
    user: str = DEFAULT_USER
    workdir: PurePosixPath = DEFAULT_WORKDIR
    environment: Mapping[str, str] = field(default_factory=dict)
    keep: bool = False
    role: str = "build"
    mem_limit: str | None = None
    # Extra bind mounts, (host path, container path), read-write as xcp-ng-dev's -v gives them.
    mounts: Sequence[tuple[str, str]] = ()
    # None: no network (the default for every build); "bridge": the engine's default network.
    network: str | None = None


def get_client() -> engine.Engine:
    """A live client (EngineError with a hint when no engine answers); the first one sweeps orphans."""
    client = engine.client()
    _sweep_once(client)
    return client


def _sweep_once(client: engine.Engine) -> None:
    if owned.first_time(("containers", id(client))):
        sweep_orphans(client)


class BuildContainer:
    """A container for one job; use as ``with BuildContainer(client, opts) as box:``."""

    def __init__(self, client: engine.Engine, options: ContainerOptions) -> None:
        self._client = client
        self.options = options
        self.name = f"xcpbuild-{options.role}-{os.getpid()}-{next(_counter)}-{int(time.time())}"
        self._container: docker.models.containers.Container | None = None

    # -- lifecycle -----------------------------------------------------------------
    def __enter__(self) -> BuildContainer:
        opts = self.options
        _sweep_once(self._client)
        labels = {LABEL: opts.role, OWNER_LABEL: owned.me().label}
        if opts.keep:
            labels[KEEP_LABEL] = "1"
        try:
            self._container = self._client.sdk.containers.create(
                opts.image,
                command=["sleep", "2147483647"],
                name=self.name,
                user=opts.user,
                working_dir=str(opts.workdir),
                environment=dict(opts.environment),
                network_mode=opts.network or "none",
                volumes={host: {"bind": inside, "mode": "rw"} for host, inside in opts.mounts},
                labels=labels,
                mem_limit=opts.mem_limit,
                ulimits=_process_limits(),
                init=True,
                detach=True,
            )
            self._container.start()
        except docker.errors.ImageNotFound as exc:
            self._remove()
            raise EngineError(
                f"image {opts.image} does not exist in the engine",
                hint="build it first with `xcpbuild image build TARGET`",
            ) from exc
        except _failures() as exc:
            self._remove()
            raise EngineError(f"could not start a container from {opts.image}: {exc}") from exc
        log.debug("started container %s from %s", self.name, opts.image)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.options.keep:
            log.warning("kept container %s for inspection (docker exec -it %s bash)", self.name, self.name)
            return
        self._remove()

    def _remove(self) -> None:
        if self._container is None:
            return
        try:
            self._container.remove(force=True)
            log.debug("removed container %s", self.name)
        except docker.errors.NotFound:
            pass
        except _failures() as exc:
            log.warning("could not remove container %s: %s", self.name, exc)
        self._container = None

    @property
    def container(self) -> docker.models.containers.Container:
        if self._container is None:
            raise EngineError("the build container is not running (use it inside a `with` block)")
        return self._container

    @property
    def id(self) -> str:
        return str(self.container.id)

    # -- files -------------------------------------------------------------------------
    def put(self, sources: Iterable[Path], dest: PurePosixPath, *, mode: int | None = None) -> None:
        """Copy host files/directories into directory ``dest`` (created, owned by the build user)."""
        buffer = io.BytesIO()
        uid, gid = _ids(self.options.user)
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for source in sources:
                tar.add(str(source), arcname=source.name, filter=lambda info: _own(info, uid, gid, mode))
        self._put_archive(dest, buffer.getvalue())

    def put_bytes(self, files: Mapping[str, bytes], dest: PurePosixPath, *, mode: int = 0o644) -> None:
        """Write in-memory files (name -> content) into directory ``dest``."""
        buffer = io.BytesIO()
        uid, gid = _ids(self.options.user)
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = mode
                info.uid, info.gid = uid, gid
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
        self._put_archive(dest, buffer.getvalue())

    def _put_archive(self, dest: PurePosixPath, data: bytes) -> None:
        self.exec(["mkdir", "-p", str(dest)], timeout=60)
        try:
            ok = self.container.put_archive(str(dest), data)
        except _failures() as exc:
            raise EngineError(f"could not copy files into {self.name}:{dest}: {exc}") from exc
        if not ok:
            raise EngineError(f"the engine refused the copy into {self.name}:{dest}")

    def get(self, path: PurePosixPath, dest: Path) -> list[Path]:
        """Copy ``path`` (a file or directory) out of the container into host directory ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        try:
            stream, _stat = self.container.get_archive(str(path))
            data = b"".join(stream)
        except docker.errors.NotFound as exc:
            raise ContainerStepError(
                f"{path} does not exist in the container", hint="the step that should have made it failed; read its log"
            ) from exc
        except _failures() as exc:
            raise EngineError(f"could not copy {path} out of {self.name}: {exc}") from exc
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = tar.getmembers()
            tar.extractall(dest, filter="data")
        return [dest / m.name for m in members if m.isfile()]

    def glob(self, directory: PurePosixPath, pattern: str) -> list[PurePosixPath]:
        """The entries of ``directory`` whose names match the shell ``pattern``, sorted (no shell involved)."""
        listing = self.exec(
            ["find", str(directory), "-mindepth", "1", "-maxdepth", "1", "-name", pattern], timeout=60, check=False
        )
        if listing.exit_code != 0:
            raise ContainerStepError(f"cannot list {directory} in the container: {listing.output.strip()}")
        return sorted(PurePosixPath(line) for line in listing.output.splitlines() if line)

    # -- steps -------------------------------------------------------------------------
    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        workdir: PurePosixPath | None = None,
        environment: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        check: bool = True,
        user: str | None = None,
    ) -> ExecResult:
        """Run ``argv`` in the container, streaming output lines to ``on_line``.

        With ``timeout`` the whole container is killed when the step runs over,
        so nothing it started keeps running; StepTimeoutError is raised.
        """
        args = tuple(argv)
        log.debug("+ [%s] %s", self.name, shlex.join(args))
        api = self._client.sdk.api
        start = time.monotonic()
        try:
            exec_id = api.exec_create(
                self.id,
                list(args),
                user=user or self.options.user,
                workdir=None if workdir is None else str(workdir),
                environment=dict(environment or {}),
                stdout=True,
                stderr=True,
            )["Id"]
            chunks: Iterator[bytes] = api.exec_start(exec_id, stream=True)
        except _failures() as exc:
            raise EngineError(f"could not run a step in {self.name}: {exc}") from exc

        timed_out = threading.Event()
        done = threading.Event()

        def watchdog() -> None:
            assert timeout is not None
            if not done.wait(timeout):
                timed_out.set()
                try:
                    self.container.kill()
                except _failures():
                    pass

        if timeout is not None:
            threading.Thread(target=watchdog, daemon=True).start()

        output: list[str] = []
        pending = b""
        try:
            for chunk in chunks:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    output.append(line)
                    if on_line is not None:
                        on_line(line)
            if pending:
                line = pending.decode(errors="replace")
                output.append(line)
                if on_line is not None:
                    on_line(line)
        except _failures() as exc:
            if not timed_out.is_set():
                raise EngineError(f"lost the output stream of a step in {self.name}: {exc}") from exc
        finally:
            done.set()
        seconds = time.monotonic() - start
        if timed_out.is_set():
            raise StepTimeoutError(
                f"`{shlex.join(args)}` exceeded its {timeout:.0f}s time limit; its container was killed"
            )
        exit_code = self._await_exit_code(exec_id)
        if exit_code is None:
            # Never success by default: a step whose end nobody saw did not pass.
            raise EngineError(
                f"the engine reported no exit code for `{shlex.join(args)}` in {self.name}",
                hint="the container may have been killed or removed while the step ran; run it again",
            )
        result = ExecResult(args, exit_code, "\n".join(output), seconds)
        if check and exit_code != 0:
            tail = " | ".join(output[-3:])
            raise ContainerStepError(f"`{shlex.join(args)}` exited with status {exit_code} in the container: {tail}")
        return result

    # How long the engine may go on reporting a step running after its output ended.
    exit_code_patience = 5.0

    def _await_exit_code(self, exec_id: str) -> int | None:
        """The step's exit code (None: the engine cannot say); it may report the step running for a moment."""
        deadline = time.monotonic() + self.exit_code_patience
        while True:
            try:
                code = _exit_code(self._client.sdk.api.exec_inspect(exec_id))
            except _failures() as exc:
                raise EngineError(f"could not read the exit code of a step in {self.name}: {exc}") from exc
            if code is not None or time.monotonic() > deadline:
                return code
            time.sleep(0.05)

    def attach(self, argv: Sequence[str], *, workdir: PurePosixPath) -> int:
        """Run ``argv`` in the container on this terminal (``docker exec -it``); return its exit status."""
        tty = ["-it"] if os.isatty(0) and os.isatty(1) else ["-i"]
        docker_cli = process.require_tool("docker")
        return process.interactive([docker_cli, "exec", *tty, "-w", str(workdir), self.name, *argv])


def _exit_code(inspected: Mapping[str, Any]) -> int | None:
    """The exit code of a finished exec, or None when the engine cannot say (still running, or unknown)."""
    if inspected.get("Running"):
        return None
    code = inspected.get("ExitCode")
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    return code


def _ids(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        return 0, 0  # named users: leave ownership to the engine's default


def _own(info: tarfile.TarInfo, uid: int, gid: int, mode: int | None) -> tarfile.TarInfo:
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    if mode is not None and info.isfile():
        info.mode = mode
    return info


# -- images ------------------------------------------------------------------------------
def _process_limits() -> list[docker.types.Ulimit]:
    """This process's own open-files and process-count limits, stated for the container.

    Left unset, Podman asks for 1048576 open files, which fails ("error setting rlimit type 7")
    wherever the engine's own hard limit is lower; dockerd passes on its own limits, which
    these match on the same machine.
    """
    limits = []
    for name, which, cap in (
        ("nofile", resource.RLIMIT_NOFILE, 1048576),
        # Podman lowers its own process limit to 32768 and cannot hand a container more.
        ("nproc", resource.RLIMIT_NPROC, 32768),
    ):
        soft, hard = resource.getrlimit(which)
        hard = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        soft = hard if soft == resource.RLIM_INFINITY else min(soft, hard)
        limits.append(docker.types.Ulimit(name=name, soft=soft, hard=hard))
    return limits


def image_id(client: engine.Engine, tag: str) -> str | None:
    """The id of image ``tag``, or None if the engine does not have it."""
    try:
        return str(client.sdk.images.get(tag).id)
    except docker.errors.ImageNotFound:
        return None
    except _failures() as exc:
        raise EngineError(f"could not look up image {tag}: {exc}") from exc


def import_rootfs(
    client: engine.Engine,
    rootfs_tar: Path,
    repository: str,
    tag: str,
    changes: Sequence[str] = (),
) -> str:
    """Import a root filesystem tarball as image ``repository:tag``; return its id.

    ``changes`` are Dockerfile instructions applied on import (``ENV PATH=...``).
    """
    try:
        # A file path, not a stream: the SDK's streaming import sends a body the engine refuses.
        result = client.sdk.api.import_image(src=str(rootfs_tar), repository=repository, tag=tag, changes=list(changes))
    except _failures() as exc:
        raise EngineError(f"could not import {rootfs_tar} as {repository}:{tag}: {exc}") from exc
    log.debug("import result: %s", result)
    found = image_id(client, f"{repository}:{tag}")
    imported = re.search(r"sha256:[0-9a-f]{64}", str(result))
    if found is None and imported:
        # Podman's Docker-compatible API imports the image but ignores repository and tag.
        try:
            client.sdk.api.tag(imported.group(0), repository, tag)
        except _failures() as exc:
            raise EngineError(f"could not tag imported image {imported.group(0)} as {repository}:{tag}: {exc}") from exc
        found = image_id(client, f"{repository}:{tag}")
    if found is None:
        raise EngineError(f"importing {rootfs_tar} did not produce {repository}:{tag}: {result}")
    return found


_RUNNING_IN = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})$")


class ImageBuildStop:
    """Stops an image build that another thread waits on.

    A thread blocked reading the engine's build output cannot be interrupted, so
    ``stop`` kills the container of the RUN step in progress (the classic builder
    names it: `` ---> Running in ID``): the build then fails at once and the
    engine removes that container (``forcerm``). A build stopped between steps is
    stopped as its next step starts, and one stopped before it began never starts.
    Podman's builder (buildah) runs its steps outside the containers the Docker API
    lists, so there a step in progress runs to its end; ``stop`` cannot cut it short.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._client: engine.Engine | None = None
        self._running: str | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            client, running = self._client, self._running
        if client is not None and running is not None:
            _kill_quietly(client, running)

    def _step_started(self, client: engine.Engine, container_id: str) -> None:
        with self._lock:
            self._client, self._running = client, container_id
            stopped = self._stopped.is_set()
        if stopped:  # stop() came before the step's container was known
            _kill_quietly(client, container_id)


def _kill_quietly(client: engine.Engine, container_id: str, *, within: float = 60.0) -> None:
    """Kill a build step's container; one just created is waited for (it cannot be killed before it starts)."""
    deadline = time.monotonic() + within
    while True:
        try:
            status = client.sdk.api.inspect_container(container_id)["State"]["Status"]
            if status == "created" and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            if status in ("running", "paused", "restarting"):
                client.sdk.api.kill(container_id)
            return
        except docker.errors.NotFound:  # the build ended on its own and the engine removed it
            return
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and time.monotonic() < deadline:  # not running yet, or just stopped
                time.sleep(0.1)
                continue
            log.debug("could not kill build step container %s: %s", container_id, exc)
            return
        except _failures() as exc:
            log.debug("could not kill build step container %s: %s", container_id, exc)
            return


def build_image(
    client: engine.Engine,
    context_dir: Path,
    tag: str,
    *,
    buildargs: Mapping[str, str] | None = None,
    host_network: bool = False,
    on_line: Callable[[str], None] | None = None,
    timeout: int = 1800,
    labels: Mapping[str, str] | None = None,
    pull: bool = False,
    platform: str | None = None,
    stop: ImageBuildStop | None = None,
) -> str:
    """Build ``context_dir``'s Dockerfile as ``tag``; return the image id.

    ``host_network`` gives RUN steps the host's network, only for installing
    packages from the machine's own mirror. ``platform`` (``linux/amd64/v2``)
    chooses the base image's variant. ``stop`` lets another thread end the build
    (ContainerStepError saying it was stopped).
    """
    if stop is not None and stop.stopped:  # on any engine: a stopped build never starts
        raise ContainerStepError(f"building image {tag} was stopped", hint="the run was stopped")
    try:
        found = _build_image(
            client,
            context_dir,
            tag,
            buildargs=buildargs,
            host_network=host_network,
            on_line=on_line,
            timeout=timeout,
            labels=labels,
            pull=pull,
            platform=platform,
            stop=stop,
        )
    except XcpbuildError:
        if stop is not None and stop.stopped:
            raise ContainerStepError(f"building image {tag} was stopped", hint="the run was stopped") from None
        raise
    if stop is not None and stop.stopped:
        raise ContainerStepError(f"building image {tag} was stopped", hint="the run was stopped")
    return found


def _build_image(
    client: engine.Engine,
    context_dir: Path,
    tag: str,
    *,
    buildargs: Mapping[str, str] | None,
    host_network: bool,
    on_line: Callable[[str], None] | None,
    timeout: int,
    labels: Mapping[str, str] | None,
    pull: bool,
    platform: str | None,
    stop: ImageBuildStop | None,
) -> str:
    api = client.sdk.api
    image: str | None = None
    extra: dict[str, Any] = {"platform": platform} if platform else {}
    try:
        stream: Iterator[dict[str, Any]] = api.build(
            path=str(context_dir),
            tag=tag,
            buildargs=dict(buildargs or {}),
            network_mode="host" if host_network else "none",
            rm=True,
            forcerm=True,
            decode=True,
            timeout=timeout,
            labels=dict(labels or {}),
            pull=pull,
            **extra,
        )
        for item in stream:
            if "stream" in item:
                for line in str(item["stream"]).splitlines():
                    running = _RUNNING_IN.match(line)
                    if running and stop is not None:
                        stop._step_started(client, running[1])
                    if line.strip() and on_line is not None:
                        on_line(line)
            if "aux" in item and "ID" in item["aux"]:
                image = str(item["aux"]["ID"])
            if "error" in item:
                raise ContainerStepError(
                    f"building image {tag} failed: {str(item['error']).strip()}",
                    hint="the lines before this one show the failing Dockerfile step",
                )
    except _failures() as exc:
        raise EngineError(f"could not build image {tag}: {exc}") from exc
    found = image_id(client, tag)
    if found is None:
        raise EngineError(f"the build of {tag} finished without an image ({image})")
    return found


@dataclass(frozen=True)
class ImageInfo:
    """An image as the engine lists it."""

    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    created: str
    size: int


def _short_tag(tag: str) -> str:
    """``NAME:TAG`` as it was given: Podman reports local images as ``localhost/NAME:TAG`` or
    ``docker.io/library/NAME:TAG``, dockerd as ``NAME:TAG``."""
    for prefix in ("localhost/", "docker.io/library/"):
        if tag.startswith(prefix):
            return tag[len(prefix) :]
    return tag


def list_images(client: engine.Engine, label: str) -> list[ImageInfo]:
    """Images carrying ``label`` (``key`` or ``key=value``)."""
    try:
        images = client.sdk.images.list(filters={"label": label})
    except _failures() as exc:
        raise EngineError(f"could not list images: {exc}") from exc
    return [
        ImageInfo(
            id=str(image.id),
            tags=tuple(_short_tag(tag) for tag in image.tags),
            labels=dict(image.labels or {}),
            created=str(image.attrs.get("Created", "")),
            size=int(image.attrs.get("Size", 0)),
        )
        for image in images
    ]


def list_containers(client: engine.Engine, role: str | None = None) -> list[str]:
    """Names of xcpbuild's containers (all, or those of one role), running or not."""
    label = f"{LABEL}={role}" if role else LABEL
    try:
        return [str(c.name) for c in client.sdk.containers.list(all=True, filters={"label": label})]
    except _failures() as exc:
        raise EngineError(f"could not list containers: {exc}") from exc


def sweep_orphans(client: engine.Engine) -> list[str]:
    """Remove the containers whose owner on this host is gone (not those kept for inspection); their names."""
    try:
        found = client.sdk.containers.list(all=True, filters={"label": OWNER_LABEL})
    except _failures() as exc:
        log.warning("could not list containers to sweep: %s", exc)
        return []
    removed = []
    for box in found:
        labels = box.labels or {}
        owner = owned.Owner.from_label(str(labels.get(OWNER_LABEL, "")))
        if owner is None or KEEP_LABEL in labels or not owner.is_gone():
            continue
        try:
            box.remove(force=True)
        except docker.errors.NotFound:
            continue
        except _failures() as exc:
            log.warning("could not remove container %s, left by process %d that is gone: %s", box.name, owner.pid, exc)
            continue
        log.info("removed container %s, left by process %d that is gone", box.name, owner.pid)
        removed.append(str(box.name))
    return removed


def container_exists(client: engine.Engine, name: str) -> bool:
    try:
        client.sdk.containers.get(name)
        return True
    except docker.errors.NotFound:
        return False
    except _failures() as exc:
        raise EngineError(f"could not look up container {name}: {exc}") from exc


def run_in_netns(box: BuildContainer, argv: Sequence[str], *, timeout: float) -> process.Completed:
    """Run a host command inside ``box``'s network namespace (``nsenter --net``).

    The container keeps network none; the host command sees only the
    container's loopback, so it can reach a server listening on 127.0.0.1
    there. Needs root (entering a namespace).
    """
    if os.geteuid() != 0:
        raise EngineError(
            "entering a container's network namespace needs root",
            hint="run the verification as root (the README's commands do)",
        )
    try:
        box.container.reload()
        pid = int(box.container.attrs["State"]["Pid"])
    except _failures(KeyError, TypeError, ValueError) as exc:
        raise EngineError(f"could not find the process of container {box.name}: {exc}") from exc
    if pid <= 0:
        raise EngineError(f"container {box.name} is not running")
    nsenter = process.require_tool("nsenter")
    return process.run([nsenter, f"--net=/proc/{pid}/ns/net", "--", *argv], timeout=timeout, check=False)
