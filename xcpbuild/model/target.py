"""Build targets: one folder per target, ``containers/NAME/`` with ``target.toml`` and a Dockerfile.

A target says which ``%{dist}`` its packages carry, which XCP-ng release it
builds for, where its image starts from and how build dependencies get in.
Unknown keys are rejected with a "did you mean" hint, as in package definitions.

Example::

    description = "XCP-ng 8.3 build environment"
    dist = ".xcpng8.3"
    xcpng_release = "8.3"
    base_image = "centos:7.5.1804"
    builddeps = "yum-builddep"
    binary_builds = true
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from xcpbuild.errors import ConfigError
from xcpbuild.model.keys import one_of, read_toml, reject_unknown, require, suggest

_KEYS = {
    "description",
    "dist",
    "xcpng_release",
    "base_image",
    "builddeps",
    "binary_builds",
    "debootstrap_include",
    "build_args",
    "build_network",
    "release_suffix",
    "userspace",
}
# The distribution a target's packages land on: EL7 (CentOS 7, an XCP-ng 7.x/8.x dom0) or the
# Debian of the offline `local` target. Templates branch on it where packaging differs.
USERSPACES = ("el7", "debian")
# How a binary build gets its BuildRequires: an image made with yum-builddep, or not at all.
BuildDeps = Literal["yum-builddep", "none"]
BUILDDEP_STRATEGIES: tuple[BuildDeps, ...] = get_args(BuildDeps)
DEBOOTSTRAP_PREFIX = "debootstrap:"
_DIST_RE = re.compile(r"^\.[A-Za-z0-9._]+$")
_RELEASE_RE = re.compile(r"^\d+\.\d+$")


@dataclass(frozen=True)
class Target:
    """A build environment as loaded from ``containers/NAME/target.toml``."""

    name: str
    path: Path
    dist: str
    xcpng_release: str
    base_image: str
    builddeps: BuildDeps
    binary_builds: bool
    description: str = ""
    # Debian packages of a debootstrap base (only for ``base_image = "debootstrap:SUITE"``).
    debootstrap_include: tuple[str, ...] = ()
    # Docker build args the user must supply from the environment: ARG name -> variable name.
    build_args: tuple[tuple[str, str], ...] = ()
    # Whether RUN steps of the Dockerfile need the host's network (installing packages).
    build_network: bool = False
    # Written literally into Release before %{?dist}: XCP-ng 7.x's ``.xcp`` (``4.3.xcp.el7.centos``).
    release_suffix: str = ""
    # el7 for CentOS-based targets; debian for a debootstrap base (the default follows base_image).
    userspace: str = "el7"

    @property
    def dist_macro(self) -> str:
        """What %{dist} is defined as in the image: the target's dist tag."""
        return self.dist

    @property
    def context_dir(self) -> Path:
        return self.path.parent

    @property
    def debootstrap_suite(self) -> str | None:
        """``bookworm`` for ``debootstrap:bookworm``; None for a registry base image."""
        if self.base_image.startswith(DEBOOTSTRAP_PREFIX):
            return self.base_image[len(DEBOOTSTRAP_PREFIX) :]
        return None


def load_target(path: Path) -> Target:
    """Load and validate one ``target.toml``; the target's name is its folder's name."""
    where = str(path)
    data = read_toml(path)
    reject_unknown(data, _KEYS, where)
    dist = require(data, "dist", str, where)
    if not _DIST_RE.match(dist):
        raise ConfigError(f"`dist` in {where} must start with a dot, like .xcpng8.3 (got {dist!r})")
    release = require(data, "xcpng_release", str, where)
    if not _RELEASE_RE.match(release):
        raise ConfigError(f"`xcpng_release` in {where} must look like 8.3 (got {release!r})")
    builddeps_text = require(data, "builddeps", str, where)
    builddeps = one_of(builddeps_text, BUILDDEP_STRATEGIES)
    if builddeps is None:
        raise ConfigError(
            f"`builddeps` in {where} must be one of {', '.join(BUILDDEP_STRATEGIES)} (got {builddeps_text!r})"
        )
    base_image = require(data, "base_image", str, where)
    include = data.get("debootstrap_include", [])
    if not isinstance(include, list) or not all(isinstance(p, str) for p in include):
        raise ConfigError(f"`debootstrap_include` in {where} must be a list of package names")
    if include and not base_image.startswith(DEBOOTSTRAP_PREFIX):
        raise ConfigError(f'`debootstrap_include` in {where} needs base_image = "debootstrap:SUITE"')
    build_args = data.get("build_args", {})
    if not isinstance(build_args, dict) or not all(isinstance(v, str) for v in build_args.values()):
        raise ConfigError(f'`build_args` in {where} must be a table of ARG = "ENVIRONMENT_VARIABLE"')
    flags: dict[str, bool] = {}
    suffix = data.get("release_suffix", "")
    if not isinstance(suffix, str) or (suffix and not _DIST_RE.match(suffix)):
        raise ConfigError(f"`release_suffix` in {where} must start with a dot, like .xcp (got {suffix!r})")
    userspace = data.get("userspace", "debian" if base_image.startswith(DEBOOTSTRAP_PREFIX) else "el7")
    if userspace not in USERSPACES:
        raise ConfigError(f"`userspace` in {where} must be one of {', '.join(USERSPACES)} (got {userspace!r})")
    for key in ("build_network",):
        flags[key] = data.get(key, False)
        if not isinstance(flags[key], bool):
            raise ConfigError(f"`{key}` in {where} must be true or false")
    return Target(
        name=path.parent.name,
        path=path,
        dist=dist,
        xcpng_release=release,
        base_image=base_image,
        builddeps=builddeps,
        binary_builds=bool(require(data, "binary_builds", bool, where)),
        description=str(data.get("description", "")),
        debootstrap_include=tuple(include),
        build_args=tuple(sorted(build_args.items())),
        build_network=flags["build_network"],
        release_suffix=suffix,
        userspace=userspace,
    )


def available_targets(containers_dir: Path) -> list[str]:
    return sorted(p.parent.name for p in containers_dir.glob("*/target.toml"))


def find_target(containers_dir: Path, name: str) -> Target:
    """Load ``containers/NAME/target.toml``, or a ConfigError listing the targets that exist."""
    path = containers_dir / name / "target.toml"
    if not path.exists():
        known = available_targets(containers_dir)
        hint = suggest(name, known, f"known targets: {', '.join(known) or 'none'}")
        raise ConfigError(f"unknown target `{name}` (no {path})", hint=hint)
    return load_target(path)
