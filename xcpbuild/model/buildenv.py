"""A build environment's facts: the repositories, macros and tools of an XCP-ng build image.

These are the tables of a family target's ``target.toml`` (``family = "el7"`` or
``"el10"``): what xcp-ng-build-env's images hold, written as data so one
Dockerfile per family serves every release. Example (XCP-ng 8.3)::

    [repositories]          # XCP-ng's own, under $XCPBUILD_XCPNG_MIRROR
    path = "8/8.3"
    arch = "x86_64"
    enabled = ["base", "updates", "candidates", "testing", "ci"]
    available = ["incoming", "lab"]
    gpgcheck = true

    [distribution]          # the EL distribution's, under its own mirror variable
    name = "CentOS"
    mirror = "XCPBUILD_CENTOS_VAULT"
    release = "7.5.1804"
    repos = ["os", "updates", "extras"]
    url = "{release}/{repo}/{arch}/"
    gpgkey = "RPM-GPG-KEY-CentOS-7"
    exclude = "ocaml*"

    [epel]
    release = "7"
    url = "{release}/{arch}/"
    gpgkey = "RPM-GPG-KEY-EPEL-7"
    exclude = "ocaml*"
    packages = ["epel-rpm-macros"]

The mirror URLs themselves are settings (never written in the project).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from xcpbuild.errors import ConfigError
from xcpbuild.model.keys import reject_unknown, require

XCPNG_MIRROR = "XCPBUILD_XCPNG_MIRROR"
EPEL_MIRROR = "XCPBUILD_EPEL_MIRROR"
XCPNG_KEY_FILE = "RPM-GPG-KEY-xcpng"
# The file every family image sources before rpmbuild (opam's environment, the stack limit).
ENV_SCRIPT = "/etc/xcpbuild/build-env.sh"
OPAM_PROFILE = "/etc/profile.d/opam.sh"

_CHANNEL_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_PATH_RE = re.compile(r"^\d+/\d+\.\d+$")
_REPO_KEYS = {
    "path",
    "arch",
    "enabled",
    "available",
    "gpgcheck",
    "exclude_release_package",
    "metadata_expire",
    "source_repos",
    "ids",
}
_DISTRO_KEYS = {"name", "mirror", "release", "repos", "disabled", "url", "gpgkey", "exclude", "ids"}
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_EPEL_KEYS = {"release", "url", "gpgkey", "exclude", "packages"}


@dataclass(frozen=True)
class XcpngRepos:
    """XCP-ng's channels in the image: ``MIRROR/<path>/<channel>/<arch>/`` (and ``Source/``)."""

    path: str  # "8/8.3": the major and the release directory the channels live under
    arch: str
    enabled: tuple[str, ...]
    available: tuple[str, ...]  # defined but disabled: for --enablerepo
    gpgcheck: bool  # gpgcheck=1 repo_gpgcheck=1 with RPM-GPG-KEY-xcpng
    exclude_release_package: tuple[str, ...] = ()  # channels with exclude=xcp-ng-release (7.x)
    metadata_expire: int | None = None
    source_repos: bool = False  # also each channel's Source/ (as the 7.x and 8.x images define)
    # The image's own repository ids where they are not xcp-ng-CHANNEL (9.x: `xcpng`), so
    # --enablerepo/--disablerepo take the names xcp-ng-dev users know.
    ids: tuple[tuple[str, str], ...] = ()

    @property
    def channels(self) -> tuple[str, ...]:
        return self.enabled + self.available

    def repo_id(self, channel: str) -> str:
        return dict(self.ids).get(channel, f"xcp-ng-{channel}")


@dataclass(frozen=True)
class DistroRepos:
    """The EL distribution's repositories, pinned to one release on a vault mirror."""

    name: str
    mirror: str  # the setting (environment variable) holding the mirror's base URL
    release: str
    repos: tuple[str, ...]
    url: str  # under the mirror: "{release}/{repo}/{arch}/"
    gpgkey: str  # a file of /etc/pki/rpm-gpg/ the base image ships
    disabled: tuple[str, ...] = ()
    exclude: str = ""
    # The ids the real image's repository files use (CentOS vault: C7.5.1804-base; AlmaLinux: crb).
    ids: tuple[tuple[str, str], ...] = ()

    def repo_id(self, repo: str) -> str:
        return dict(self.ids).get(repo, f"{self.name.lower()}-{self.release}-{repo.lower()}")


@dataclass(frozen=True)
class EpelRepo:
    release: str
    url: str  # under $XCPBUILD_EPEL_MIRROR
    gpgkey: str  # installed by epel-release
    exclude: str = ""
    packages: tuple[str, ...] = ()  # installed from EPEL once it is configured (epel-rpm-macros)


@dataclass(frozen=True)
class BuildEnv:
    """Everything a family Dockerfile is given, as data."""

    el_major: int
    xenserver: int | None  # %xenserver as xcp-ng-release defines it (None: not defined)
    packages: tuple[str, ...]  # build tools installed in the image
    xcpng: XcpngRepos
    distro: DistroRepos
    epel: EpelRepo | None
    opam_root: str = ""  # where xs-opam-repo's opam root lives (its env is sourced if present)
    releasever: str = ""  # pinned dnf releasever (AlmaLinux 10.0)
    stack_kib: int = 16384  # ulimit -s before rpmbuild, as xcp-ng-build-env doubles it

    @property
    def mirrors(self) -> tuple[str, ...]:
        """The settings this environment needs, in the order they are asked for."""
        found = [XCPNG_MIRROR, self.distro.mirror]
        if self.epel is not None:
            found.append(EPEL_MIRROR)
        return tuple(found)

    @property
    def repo_ids(self) -> tuple[str, ...]:
        ids = [self.xcpng.repo_id(c) for c in self.xcpng.channels]
        if self.xcpng.source_repos:
            ids += [f"{self.xcpng.repo_id(c)}-src" for c in self.xcpng.channels]
        ids += [self.distro.repo_id(r) for r in self.distro.repos]
        if self.epel is not None:
            ids.append("epel")
        return tuple(ids)


def _ids(data: dict[str, Any], names: tuple[str, ...], where: str) -> tuple[tuple[str, str], ...]:
    """An ``ids = { NAME = "repo-id" }`` table: for names this table defines, ids a .repo file takes."""
    raw = data.get("ids", {})
    if not isinstance(raw, dict) or not all(isinstance(v, str) and _REPO_ID_RE.match(v) for v in raw.values()):
        raise ConfigError(f'`ids` in {where} must be a table of NAME = "repository-id"')
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"`ids` in {where} names {', '.join(unknown)}, which it does not define")
    if len(set(raw.values())) != len(raw):
        raise ConfigError(f"`ids` in {where} gives two repositories the same id")
    return tuple(sorted(raw.items()))


def _strings(data: dict[str, Any], key: str, where: str, *, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if key not in data and default is not None:
        return default
    value = require(data, key, list, where)
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"`{key}` in {where} must be a list of names")
    return tuple(value)


def _text(data: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    if key not in data and default is not None:
        return default
    return str(require(data, key, str, where))


def _url_template(value: str, where: str) -> str:
    try:
        value.format(release="R", repo="r", arch="a")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"`url` in {where} may use only {{release}}, {{repo}} and {{arch}} (got {value!r})") from exc
    if "://" in value or value.startswith("/") or not value.endswith("/"):
        raise ConfigError(f"`url` in {where} is a path under the mirror ending in / (got {value!r})")
    return value


def _xcpng(data: dict[str, Any], where: str) -> XcpngRepos:
    where = f"[repositories] of {where}"
    reject_unknown(data, _REPO_KEYS, where)
    path = _text(data, "path", where)
    if not _PATH_RE.match(path):
        raise ConfigError(f"`path` in {where} must look like 8/8.3 (got {path!r})")
    enabled = _strings(data, "enabled", where)
    available = _strings(data, "available", where, default=())
    for channel in enabled + available:
        if not _CHANNEL_RE.match(channel):
            raise ConfigError(f"channel {channel!r} in {where} is not a channel name")
    if set(enabled) & set(available):
        raise ConfigError(f"{where} lists {sorted(set(enabled) & set(available))} as both enabled and available")
    excluded = _strings(data, "exclude_release_package", where, default=())
    expire = data.get("metadata_expire")
    if expire is not None and (not isinstance(expire, int) or isinstance(expire, bool) or expire < 0):
        raise ConfigError(f"`metadata_expire` in {where} must be a number of seconds")
    return XcpngRepos(
        path=path,
        arch=_text(data, "arch", where),
        enabled=enabled,
        available=available,
        gpgcheck=bool(require(data, "gpgcheck", bool, where)),
        exclude_release_package=excluded,
        metadata_expire=expire,
        source_repos=bool(data.get("source_repos", False)),
        ids=_ids(data, enabled + available, where),
    )


def _distro(data: dict[str, Any], where: str) -> DistroRepos:
    where = f"[distribution] of {where}"
    reject_unknown(data, _DISTRO_KEYS, where)
    mirror = _text(data, "mirror", where)
    if not re.match(r"^XCPBUILD_[A-Z0-9_]+$", mirror):
        raise ConfigError(f"`mirror` in {where} names a setting like XCPBUILD_CENTOS_VAULT (got {mirror!r})")
    repos = _strings(data, "repos", where)
    disabled = _strings(data, "disabled", where, default=())
    if not set(disabled) <= set(repos):
        raise ConfigError(
            f"`disabled` in {where} names repositories not in `repos`: {sorted(set(disabled) - set(repos))}"
        )
    return DistroRepos(
        name=_text(data, "name", where),
        mirror=mirror,
        release=_text(data, "release", where),
        repos=repos,
        url=_url_template(_text(data, "url", where), where),
        gpgkey=_text(data, "gpgkey", where),
        disabled=disabled,
        exclude=_text(data, "exclude", where, ""),
        ids=_ids(data, repos, where),
    )


def _epel(data: dict[str, Any], where: str) -> EpelRepo:
    where = f"[epel] of {where}"
    reject_unknown(data, _EPEL_KEYS, where)
    return EpelRepo(
        release=_text(data, "release", where),
        url=_url_template(_text(data, "url", where), where),
        gpgkey=_text(data, "gpgkey", where),
        exclude=_text(data, "exclude", where, ""),
        packages=_strings(data, "packages", where, default=()),
    )


def load_build_env(data: dict[str, Any], where: str) -> BuildEnv:
    """The environment tables of a family target (``data`` is the whole target.toml)."""
    for table in ("repositories", "distribution"):
        if not isinstance(data.get(table), dict):
            raise ConfigError(f"{where} has a `family` but no [{table}] table", hint="see xcpbuild/model/buildenv.py")
    el_major = require(data, "el_major", int, where)
    xenserver = data.get("xenserver")
    if xenserver is not None and (not isinstance(xenserver, int) or isinstance(xenserver, bool)):
        raise ConfigError(f"`xenserver` in {where} must be a number (the %xenserver macro)")
    epel = data.get("epel")
    if epel is not None and not isinstance(epel, dict):
        raise ConfigError(f"`epel` in {where} must be a table")
    stack = data.get("stack_kib", 16384)
    if not isinstance(stack, int) or isinstance(stack, bool) or stack <= 0:
        raise ConfigError(f"`stack_kib` in {where} must be a positive number")
    return BuildEnv(
        el_major=el_major,
        xenserver=xenserver,
        packages=_strings(data, "packages", where),
        xcpng=_xcpng(data["repositories"], where),
        distro=_distro(data["distribution"], where),
        epel=_epel(epel, where) if epel is not None else None,
        opam_root=_text(data, "opam_root", where, ""),
        releasever=_text(data, "releasever", where, ""),
        stack_kib=stack,
    )
