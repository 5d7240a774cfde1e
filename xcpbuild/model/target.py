"""Build targets: one folder per target, ``containers/NAME/`` with ``target.toml``.

A target says which ``%{dist}`` its packages carry, which XCP-ng release it
builds for, where its image starts from and how build dependencies get in.
Its image is built from its own folder (a Dockerfile beside target.toml, as
``local``) or from its family's (``family = "el7"``: ``containers/el7/``, one
Dockerfile for every CentOS 7 release), given the facts of
:mod:`xcpbuild.model.buildenv`. Unknown keys are rejected with a "did you
mean" hint, as in package definitions.

Example::

    description = "XCP-ng 8.3 build environment"
    family = "el7"
    dist = ".xcpng8.3"
    xcpng_release = "8.3"
    base_image = "centos:7.5.1804"
    builddeps = "yum-builddep"
    binary_builds = true
    el_major = 7
    xenserver = 8
    # ... [repositories], [distribution], [epel]: see model/buildenv.py
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from xcpbuild.errors import ConfigError
from xcpbuild.model.buildenv import BuildEnv, load_build_env
from xcpbuild.model.keys import read_toml, reject_unknown, require, suggest

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
    "family",
    "platform",
    # the build environment's facts (model/buildenv.py)
    "el_major",
    "xenserver",
    "packages",
    "opam_root",
    "releasever",
    "stack_kib",
    "repositories",
    "distribution",
    "epel",
    "userspace",
}
# The distribution a target's packages land on: EL7 (CentOS 7, an XCP-ng 7.x/8.x dom0), EL10
# (XCP-ng 9) or the Debian of the offline `local` target. Templates branch on it where packaging differs.
USERSPACES = ("el7", "el10", "debian")
# How BuildRequires get in: yum-builddep (EL7) or dnf builddep (EL10, and local's dnf) in an
# image layer from the SRPM, or not at all.
BuilddepStrategy = Literal["yum-builddep", "dnf-builddep", "none"]
BUILDDEP_STRATEGIES: tuple[BuilddepStrategy, ...] = get_args(BuilddepStrategy)
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
    builddeps: BuilddepStrategy
    binary_builds: bool
    description: str = ""
    # Debian packages of a debootstrap base (only for ``base_image = "debootstrap:SUITE"``).
    debootstrap_include: tuple[str, ...] = ()
    # Docker build args the user must supply from the environment: ARG name -> variable name.
    build_args: tuple[tuple[str, str], ...] = ()
    # Whether RUN steps of the Dockerfile need the host's network (installing packages).
    build_network: bool = False
    # XCP-ng 7.5 wrote ``.xcp`` into Release (``4.2.xcp``) before %{dist} (``.el7.centos``).
    release_suffix: str = ""
    # The family whose folder holds the Dockerfile (None: the target's own folder).
    family: str | None = None
    env: BuildEnv | None = None
    platform: str | None = None  # the engine's platform for the image (linux/amd64/v2)
    # el7 for CentOS-based targets; debian for a debootstrap base (the default follows base_image).
    userspace: str = "el7"

    @property
    def dist_macro(self) -> str:
        """What %{dist} is defined as in the image and for every rpmbuild."""
        return self.dist

    @property
    def rpm_arch(self) -> str | None:
        """What binary builds pass as ``rpmbuild --target`` (xcp-ng-build-env's RPMARCH: the image's
        repository architecture, x86_64_v2 on 9.x); None where rpm's own default is meant (local)."""
        return self.env.xcpng.arch if self.env is not None else None

    @property
    def context_dir(self) -> Path:
        """The folder holding the Dockerfile: the family's, or the target's own."""
        if self.family is not None:
            return self.path.parent.parent / self.family
        return self.path.parent

    @property
    def builddeps_only_from_given(self) -> bool:
        """Whether the image has no repositories of its own: BuildRequires come only from
        the repositories given to a build (``--repo-url``, ``--local-repo``)."""
        return self.env is None

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
    builddeps = _strategy(require(data, "builddeps", str, where), where)
    base_image = require(data, "base_image", str, where)
    include = data.get("debootstrap_include", [])
    if not isinstance(include, list) or not all(isinstance(p, str) for p in include):
        raise ConfigError(f"`debootstrap_include` in {where} must be a list of package names")
    if include and not base_image.startswith(DEBOOTSTRAP_PREFIX):
        raise ConfigError(f'`debootstrap_include` in {where} needs base_image = "debootstrap:SUITE"')
    build_args = data.get("build_args", {})
    if not isinstance(build_args, dict) or not all(isinstance(v, str) for v in build_args.values()):
        raise ConfigError(f'`build_args` in {where} must be a table of ARG = "ENVIRONMENT_VARIABLE"')
    build_network = data.get("build_network", False)
    if not isinstance(build_network, bool):
        raise ConfigError(f"`build_network` in {where} must be true or false")
    suffix = data.get("release_suffix", "")
    if not isinstance(suffix, str) or (suffix and not _DIST_RE.match(suffix)):
        raise ConfigError(f"`release_suffix` in {where} must start with a dot, like .xcp (got {suffix!r})")
    platform = data.get("platform")
    if platform is not None and (not isinstance(platform, str) or not re.match(r"^linux/[a-z0-9_]+(/v\d)?$", platform)):
        raise ConfigError(f"`platform` in {where} must look like linux/amd64/v2 (got {platform!r})")
    family = data.get("family")
    env = None
    if family is not None:
        if not isinstance(family, str) or not re.match(r"^[a-z0-9][a-z0-9._-]*$", family):
            raise ConfigError(f"`family` in {where} names a folder of containers/, like el7 (got {family!r})")
        if not (path.parent.parent / family / "Dockerfile").is_file():
            raise ConfigError(
                f"`family` in {where}: containers/{family}/Dockerfile does not exist",
                hint="a family is a folder of containers/ holding the Dockerfile its targets share",
            )
        env = load_build_env(data, where)
    else:
        stray = sorted(set(data) & {"el_major", "xenserver", "packages", "repositories", "distribution", "epel"})
        if stray:
            raise ConfigError(f"{where} sets {', '.join(stray)} but no `family` to give them to")
    default_userspace = "debian" if base_image.startswith(DEBOOTSTRAP_PREFIX) else "el7"
    if env is not None and env.el_major >= 10:
        default_userspace = "el10"
    userspace = data.get("userspace", default_userspace)
    if userspace not in USERSPACES:
        raise ConfigError(f"`userspace` in {where} must be one of {', '.join(USERSPACES)} (got {userspace!r})")
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
        build_network=build_network,
        release_suffix=suffix,
        family=family,
        env=env,
        platform=platform,
        userspace=userspace,
    )


def _strategy(value: str, where: str) -> BuilddepStrategy:
    for known in BUILDDEP_STRATEGIES:
        if value == known:
            return known
    raise ConfigError(f"`builddeps` in {where} must be one of {', '.join(BUILDDEP_STRATEGIES)} (got {value!r})")


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
