"""A family target's image inputs, rendered from its facts: repository files, macros, build arguments.

xcp-ng-build-env keeps one Dockerfile per family and fills in a release's
repositories with sed; here the family Dockerfile (``containers/el7/``,
``containers/el10/``) gets a ``rendered/`` folder made from the target's
:class:`~xcpbuild.model.buildenv.BuildEnv` and the mirror settings:

- ``rendered/yum.repos.d/xcp-ng.repo``: XCP-ng's channels under
  ``$XCPBUILD_XCPNG_MIRROR/<major>/<X.Y>/<channel>/<arch>/``, the enabled ones on,
  the others defined but off (for ``--enablerepo``), priority 1, and with
  ``gpgcheck=1 repo_gpgcheck=1`` the XCP-ng key from ``$XCPBUILD_XCPNG_KEY``;
- ``rendered/yum.repos.d/<distribution>.repo`` and ``epel.repo``: the EL
  distribution pinned to one vault release and EPEL, with their ``exclude=``;
- ``rendered/macros.dist``: ``%dist``, ``%xenserver`` and the EL macros as
  xcp-ng-release writes them into ``/etc/rpm/macros.dist``;
  ``rendered/macros.xcpbuild``: xcpbuild's own ``%xcpng_release``;
- ``rendered/build-env.sh``: sourced before every rpmbuild step (opam's
  environment, the stack limit);
- the build arguments: BASE, DIST, XCPNG_RELEASE, PACKAGES, EPEL_PACKAGES, RELEASEVER.

Everything here is pure: the settings come in, text comes out.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.errors import ConfigError
from xcpbuild.model.buildenv import (
    EPEL_MIRROR,
    OPAM_PROFILE,
    XCPNG_KEY_FILE,
    XCPNG_MIRROR,
    BuildEnv,
    EpelRepo,
)
from xcpbuild.model.target import Target

XCPNG_KEY = "XCPBUILD_XCPNG_KEY"
BASE_IMAGES = "XCPBUILD_BASE_IMAGES"
GPG_DIR = "/etc/pki/rpm-gpg"
# What xcp-ng-release 9 adds to macros.dist after %dist.
_XCPNG_VENDOR = (
    "%dist_vendor Vates SAS",
    "%dist_name XCP-ng",
    "%dist_home_url https://xcp-ng.org/",
    "%dist_bug_report_url https://github.com/xcp-ng/xcp",
)


@dataclass(frozen=True)
class RenderedEnv:
    """The files of ``rendered/`` (path relative to it -> bytes) and the build arguments."""

    files: tuple[tuple[str, bytes], ...]
    build_args: tuple[tuple[str, str], ...]

    def file(self, name: str) -> str:
        return dict(self.files)[name].decode()

    def write(self, context: Path) -> None:
        for name, data in self.files:
            path = context / "rendered" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (context / "rendered" / "rpm-gpg").mkdir(parents=True, exist_ok=True)


def mirror_url(variables: Mapping[str, str], name: str, target: Target, shape: str) -> str:
    """The base URL the setting ``name`` holds, without a trailing slash; one line + hint otherwise."""
    value = variables.get(name, "").strip()
    if not value:
        raise ConfigError(
            f"target {target.name} needs ${name}: the base URL of a mirror under which {shape} lives",
            hint=f"export {name}=https://HOST/PATH (see README, Settings); or build offline with --target local",
        )
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"${name} must be an http(s) URL like https://HOST/PATH (got {value!r})")
    if "@" in parts.netloc:
        raise ConfigError(
            f"${name} holds credentials: they would be written into the image's repository files",
            hint="use a mirror that needs none, or a local proxy in front of it",
        )
    return value.rstrip("/")


def _section(repo_id: str, values: list[tuple[str, str]]) -> str:
    return "\n".join([f"[{repo_id}]", *(f"{k}={v}" for k, v in values)]) + "\n"


def _gpg(env: BuildEnv) -> list[tuple[str, str]]:
    if not env.xcpng.gpgcheck:
        return [("gpgcheck", "0")]
    return [("gpgcheck", "1"), ("repo_gpgcheck", "1"), ("gpgkey", f"file://{GPG_DIR}/{XCPNG_KEY_FILE}")]


def xcpng_repo_file(target: Target, env: BuildEnv, mirror: str) -> str:
    """XCP-ng's channels, enabled ones first, then Source repositories when the target has them."""
    repos = env.xcpng
    sections = []
    for source in (False, True) if repos.source_repos else (False,):
        for channel in repos.channels:
            repo_id = repos.repo_id(channel) + ("-src" if source else "")
            kind = "Source" if source else repos.arch
            values = [
                ("name", f"XCP-ng {target.xcpng_release} {channel}{' source' if source else ''}"),
                ("baseurl", f"{mirror}/{repos.path}/{channel}/{kind}/"),
                ("enabled", "1" if channel in repos.enabled else "0"),
                *_gpg(env),
                ("priority", "1"),
            ]
            if channel in repos.exclude_release_package and not source:
                values.append(("exclude", "xcp-ng-release"))
            if repos.metadata_expire is not None:
                values.append(("metadata_expire", str(repos.metadata_expire)))
            sections.append(_section(repo_id, values))
    return "\n".join(sections)


def distro_repo_file(env: BuildEnv, mirror: str) -> str:
    distro = env.distro
    sections = []
    for repo in distro.repos:
        path = distro.url.format(release=distro.release, repo=repo, arch=env.xcpng.arch)
        values = [
            ("name", f"{distro.name} {distro.release} {repo}"),
            ("baseurl", f"{mirror}/{path}"),
            ("enabled", "0" if repo in distro.disabled else "1"),
            ("gpgcheck", "1"),
            ("gpgkey", f"file://{GPG_DIR}/{distro.gpgkey}"),
        ]
        if distro.exclude:
            values.append(("exclude", distro.exclude))
        sections.append(_section(distro.repo_id(repo), values))
    return "\n".join(sections)


def epel_repo_file(env: BuildEnv, epel: EpelRepo, mirror: str) -> str:
    values = [
        ("name", f"EPEL {epel.release}"),
        ("baseurl", f"{mirror}/{epel.url.format(release=epel.release, repo='epel', arch=env.xcpng.arch)}"),
        ("enabled", "1"),
        ("gpgcheck", "1"),
        ("gpgkey", f"file://{GPG_DIR}/{epel.gpgkey}"),
    ]
    if epel.exclude:
        values.append(("exclude", epel.exclude))
    return _section("epel", values)


def macros_dist(target: Target, env: BuildEnv) -> str:
    """/etc/rpm/macros.dist as xcp-ng-release writes it for the target's release."""
    el = env.el_major
    lines = ["# dist macros (as xcp-ng-release defines them)", ""]
    if env.distro.name == "AlmaLinux":
        # xcp-ng-release 9: %xcpng and the AlmaLinux names, %dist built on %distcore.
        lines += ["%__bootstrap ~bootstrap", f"%xcpng {target.xcpng_release.split('.')[0]}"]
        if env.xenserver is not None:
            lines.append(f"%xenserver {env.xenserver}")
        lines += [f"%almalinux_ver {el}", f"%almalinux {el}"]
    lines += [f"%centos_ver {el}", f"%centos {el}", f"%rhel {el}"]
    if env.distro.name == "AlmaLinux":
        # %dist is fixed here (xcp-ng-release builds it from %distprefix/%distsuffix; every rpmbuild
        # defines it anyway); the vendor macros are xcp-ng-release 9's.
        lines += [f"%el{el} 1", f"%distcore .el{el}", f"%dist {target.dist}", *_XCPNG_VENDOR]
    else:
        lines += [f"%dist {target.dist}", f"%el{el} 1"]
        if env.xenserver is not None:
            lines.append(f"%xenserver {env.xenserver}")
    return "\n".join(lines) + "\n"


def build_env_script(env: BuildEnv) -> str:
    """What every rpmbuild step sources first, as xcp-ng-build-env's container does."""
    lines = [
        "# Sourced before every rpmbuild step (xcpbuild's family images).",
        f"ulimit -s {env.stack_kib} 2>/dev/null || :",
        "# OCaml packages: opam's environment, from xs-opam-repo's profile file once it is installed",
        f"if [ -r {OPAM_PROFILE} ]; then . {OPAM_PROFILE}",
    ]
    if env.opam_root:
        lines.append(f'elif [ -d {env.opam_root} ]; then eval "$(opam config env --root={env.opam_root})"')
    lines.append("fi")
    return "\n".join(lines) + "\n"


def _xcpng_key(variables: Mapping[str, str], target: Target) -> bytes:
    value = variables.get(XCPNG_KEY, "").strip()
    if not value:
        raise ConfigError(
            f"target {target.name} checks XCP-ng's signatures (gpgcheck=1 repo_gpgcheck=1) and needs ${XCPNG_KEY}",
            hint=f"export {XCPNG_KEY}=PATH of {XCPNG_KEY_FILE}, the XCP-ng public key you obtained and checked",
        )
    path = Path(value).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"${XCPNG_KEY}: cannot read {path}: {exc.strerror}") from exc
    if not data.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"):
        raise ConfigError(f"${XCPNG_KEY}: {path} is not an armored public key", hint="gpg --armor --export KEYID")
    return data


def render(target: Target, variables: Mapping[str, str], base: str) -> RenderedEnv:
    """The rendered/ files and build arguments of a family target (``variables``: the settings)."""
    env = target.env
    if env is None:
        raise ConfigError(f"target {target.name} has no build environment facts to render")
    xcpng = mirror_url(variables, XCPNG_MIRROR, target, f"{env.xcpng.path}/base/{env.xcpng.arch}/")
    distro_shape = env.distro.url.format(release=env.distro.release, repo=env.distro.repos[0], arch=env.xcpng.arch)
    distro = mirror_url(variables, env.distro.mirror, target, distro_shape)
    files = [
        ("yum.repos.d/xcp-ng.repo", xcpng_repo_file(target, env, xcpng)),
        (f"yum.repos.d/{env.distro.name.lower()}.repo", distro_repo_file(env, distro)),
        ("macros.dist", macros_dist(target, env)),
        ("macros.xcpbuild", f"%xcpng_release {target.xcpng_release}\n"),
        ("build-env.sh", build_env_script(env)),
    ]
    epel_packages = ""
    if env.epel is not None:
        epel_shape = env.epel.url.format(release=env.epel.release, repo="epel", arch=env.xcpng.arch)
        epel_mirror = mirror_url(variables, EPEL_MIRROR, target, epel_shape)
        files.append(("yum.repos.d/epel.repo", epel_repo_file(env, env.epel, epel_mirror)))
        epel_packages = " ".join(env.epel.packages)
    encoded = [(name, text.encode()) for name, text in files]
    if env.xcpng.gpgcheck:
        encoded.append((f"rpm-gpg/{XCPNG_KEY_FILE}", _xcpng_key(variables, target)))
    args = [
        ("BASE", base),
        ("DIST", target.dist_macro),
        ("XCPNG_RELEASE", target.xcpng_release),
        ("PACKAGES", " ".join(env.packages)),
        ("EPEL_PACKAGES", epel_packages),
    ]
    if env.releasever:
        args.append(("RELEASEVER", env.releasever))
    return RenderedEnv(files=tuple(sorted(encoded)), build_args=tuple(args))


def base_images(variables: Mapping[str, str]) -> dict[str, str]:
    """``XCPBUILD_BASE_IMAGES``: ``NAME=LOCAL`` pairs (spaces or commas between them)."""
    found: dict[str, str] = {}
    for item in variables.get(BASE_IMAGES, "").replace(",", " ").split():
        name, sep, local = item.partition("=")
        if not sep or not name or not local:
            raise ConfigError(
                f"${BASE_IMAGES}: {item!r} must look like NAME=LOCAL_IMAGE",
                hint=f"e.g. {BASE_IMAGES}='centos:7.5.1804=my-centos:7.5.1804'",
            )
        found[name] = local
    return found
