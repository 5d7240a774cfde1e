"""Finding, and on a fresh Debian machine starting, a Docker engine.

On a machine where no engine answers and we are root on Debian, ``bring_up``
installs ``docker.io`` and starts ``dockerd`` with no bridge network (builds run
with network none; image builds that install packages use host networking), then
waits for its socket. Everywhere else it explains how to get an engine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xcpbuild.adapters import process
from xcpbuild.adapters.lazy import Lazy
from xcpbuild.errors import EngineError
from xcpbuild.log import get_logger

if TYPE_CHECKING:
    import docker
    import docker.errors
    import requests.exceptions
else:  # imported on first use (see adapters/lazy.py)
    docker = Lazy("docker", "errors")
    requests = Lazy("requests", "exceptions")

log = get_logger("engine")

DEFAULT_SOCKET = Path("/var/run/docker.sock")
DOCKERD_ARGS = ("--bridge=none", "--iptables=false", "--ip-masq=false")
STATE_DIR = Path("/var/lib/xcpbuild")


@dataclass(frozen=True)
class EngineInfo:
    """What the engine says about itself."""

    url: str
    version: str
    api_version: str
    os: str
    storage_driver: str


class Engine:
    """A live connection to a Docker engine.

    Layers above the adapters hold it and hand it back to adapter functions; only
    adapters reach the Docker SDK client inside (``sdk``), so SDK types and
    exceptions never leak upwards.
    """

    __slots__ = ("sdk",)

    def __init__(self, sdk: docker.DockerClient) -> None:
        self.sdk = sdk


def client(timeout: int = 600) -> Engine:
    """A connection to the engine DOCKER_HOST (or the default socket) names, checked with a ping."""
    try:
        cli = docker.from_env(timeout=timeout)
        cli.ping()
        return Engine(cli)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        where = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
        raise EngineError(f"no Docker engine answers at {where}") from exc


def info(engine: Engine) -> EngineInfo:
    cli = engine.sdk
    try:
        version = cli.version()
        details = cli.info()
    except docker.errors.DockerException as exc:
        raise EngineError(f"the Docker engine did not answer a version query: {exc}") from exc
    return EngineInfo(
        url=str(cli.api.base_url),
        version=str(version.get("Version", "?")),
        api_version=str(version.get("ApiVersion", "?")),
        os=str(details.get("OperatingSystem", "?")),
        storage_driver=str(details.get("Driver", "?")),
    )


def _is_debian() -> bool:
    return Path("/etc/debian_version").exists()


def _socket_answers(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if DEFAULT_SOCKET.exists():
            try:
                client(timeout=5)
                return True
            except EngineError:
                pass
        time.sleep(0.5)
    return False


def bring_up(install: bool = True, wait_seconds: float = 60.0) -> EngineInfo:
    """Return the running engine, or install and start one on Debian as root."""
    try:
        return info(client())
    except EngineError:
        if os.environ.get("DOCKER_HOST"):
            raise  # the user chose an engine explicitly; do not start a different one
    if os.geteuid() != 0 or not _is_debian():
        raise EngineError(
            "no Docker engine answers and this machine is not Debian with root, so xcpbuild cannot start one",
            hint="start Docker (systemctl start docker), or Podman's Docker-compatible socket "
            "(systemctl --user start podman.socket; export DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock)",
        )
    if process.which("dockerd") is None:
        if not install:
            raise EngineError("dockerd is not installed", hint="apt-get install -y docker.io")
        log.info("installing docker.io (apt-get)")
        process.run(
            ["apt-get", "install", "-y", "-q", "docker.io"], env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=900
        )
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    log_path = STATE_DIR / "dockerd.log"
    log.info("starting dockerd %s (log: %s)", " ".join(DOCKERD_ARGS), log_path)
    proc = process.spawn([process.require_tool("dockerd"), *DOCKERD_ARGS], stdout_path=log_path)
    (STATE_DIR / "dockerd.pid").write_text(f"{proc.pid}\n")
    if not _socket_answers(wait_seconds):
        process.stop(proc)
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise EngineError(
            f"dockerd started but its socket did not answer within {wait_seconds:.0f}s: {' | '.join(tail)}",
            hint=f"read {log_path}",
        )
    return info(client())


def started_pid() -> int | None:
    """The pid of a dockerd this module started, if it is still running."""
    pid_file = STATE_DIR / "dockerd.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None
