"""Fetch upstream sources: a cached git mirror, a pinned ref, a reproducible release tarball.

The tarball is ``git archive --format=tar --prefix=NAME-VERSION/`` of the resolved
commit (every entry stamped with the commit's time), gzipped here with no name and
mtime 0, so the same commit always gives the same bytes and a pinned sha256 means
something. On a pin mismatch nothing is written.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.adapters import git, owned
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError, SourceError
from xcpbuild.log import get_logger, step
from xcpbuild.model.package import PackageDef
from xcpbuild.pipeline.sources.package import DefinedPackage, Package

log = get_logger("source")

_TAG_VERSION_RE = re.compile(r"^v?(\d[0-9A-Za-z.+~]*)$")


@dataclass(frozen=True)
class FetchedSource:
    """A release tarball made from upstream: what it is and where it was written."""

    package: str
    version: str
    ref: str
    commit: str
    tarball: Path
    sha256: str


def upstream_url(pkg: PackageDef, override: str | None) -> str:
    url = override or pkg.upstream
    if not url:
        raise ConfigError(
            f"package {pkg.name} has no upstream git repository",
            hint=f"add `upstream = URL` to {pkg.path}, or pass --upstream",
        )
    return url


def mirror(settings: Settings, pkg: PackageDef, upstream: str | None = None) -> Path:
    """The up-to-date cached mirror of the package's upstream (``--upstream`` wins)."""
    url = upstream_url(pkg, upstream)
    with step(f"mirror {url}"):
        return git.mirror(settings.cache_dir, url)


def version_for_ref(ref: str, pinned_ref: str, pinned_version: str, commit: str) -> str:
    """The version a tarball of ``ref`` carries: the pin's, a tag's (v1.2 -> 1.2), or a snapshot."""
    if ref == pinned_ref:
        return pinned_version
    match = _TAG_VERSION_RE.match(ref)
    if match:
        return match.group(1)
    return f"{pinned_version}+git{commit[:10]}"


def tarball_bytes(tar: bytes) -> bytes:
    """gzip with a fixed header (no file name, mtime 0, level 9): same tar, same bytes."""
    return gzip.compress(tar, compresslevel=9, mtime=0)


def _write_atomically(path: Path, data: bytes) -> None:
    # Owned: a run killed while writing leaves a file the next one recognises and removes.
    with owned.scratch_file(f".{path.name}", parent=path.parent) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(0o644)  # made 0600; a tarball is meant to be shared
        tmp.replace(path)


def fetch(  # noqa: PLR0917 - the interface other steps call positionally
    settings: Settings,
    pkg: PackageDef,
    target: str = "local",
    upstream: str | None = None,
    ref: str | None = None,
    out_dir: Path | None = None,
) -> FetchedSource:
    """Write ``NAME-VERSION.tar.gz`` of ``ref`` (default: the target's pinned ref) to ``out_dir``.

    The target's sha256 pin is checked when the pinned ref is fetched; a mismatch
    raises SourceError showing both values and writes nothing.
    """
    pin = pkg.pin(target)
    wanted = ref or pin.ref
    repo = mirror(settings, pkg, upstream)
    commit = git.resolve(repo, wanted)
    version = version_for_ref(wanted, pin.ref, pin.version, commit)
    name = pkg.tarball_name(version)
    with step(f"archive {pkg.name} {wanted} ({commit[:12]})"):
        data = tarball_bytes(git.archive_tar(repo, commit, prefix=f"{pkg.name}-{version}/"))
    digest = hashlib.sha256(data).hexdigest()
    if wanted == pin.ref and pin.sha256 and digest != pin.sha256:
        raise SourceError(
            f"{name} from {wanted} ({commit[:12]}) has sha256 {digest}, but {pkg.path.name} pins {pin.sha256}",
            hint="upstream moved the ref or this is the wrong upstream; if the change is expected, update `sha256`",
        )
    if wanted == pin.ref and not pin.sha256:
        log.warning("%s has no sha256 pin for target %s; its sha256 is %s", pkg.name, target, digest)
    destination = (out_dir or settings.work_dir / "sources" / pkg.name) / name
    _write_atomically(destination, data)
    log.info("wrote %s (sha256 %s)", destination, digest)
    return FetchedSource(
        package=pkg.name, version=version, ref=wanted, commit=commit, tarball=destination, sha256=digest
    )


def fetch_upstream(
    settings: Settings,
    package: Package,
    *,
    upstream: str | None = None,
    ref: str | None = None,
    out_dir: Path | None = None,
) -> FetchedSource:
    """``NAME-VERSION.tar.gz`` of the package's upstream at ``ref`` (default: the commit it pins).

    A definition goes through ``fetch`` (its sha256 pin checked). A package
    repository's upstream is the one its spec names (``Provides: gitsha(URL) =
    SHA``, ``%global package_srccommit``, ``URL:``) or ``--upstream``; it has no
    sha256 pin, since what it builds is its own SOURCES/ tarball.
    """
    if isinstance(package, DefinedPackage):
        return fetch(settings, package.definition, package.target.name, upstream, ref, out_dir)
    url = upstream or package.upstream_url
    if not url:
        raise ConfigError(
            f"the spec of {package.name} names no upstream git repository (no gitsha() or URL:)",
            hint=f"pass --upstream URL_OR_PATH, or add a URL: line to {package.where}",
        )
    wanted = ref or package.pinned_ref
    if not wanted:
        raise ConfigError(
            f"the spec of {package.name} names no upstream commit (no package_srccommit or gitsha())",
            hint="pass the upstream ref to use with --ref REF",
        )
    with step(f"mirror {url}"):
        repo = git.mirror(settings.cache_dir, url)
    commit = git.resolve(repo, wanted)
    version = version_for_ref(wanted, package.pinned_ref or "", package.version, commit)
    name = f"{package.name}-{version}.tar.gz"
    with step(f"archive {package.name} {wanted} ({commit[:12]})"):
        data = tarball_bytes(git.archive_tar(repo, commit, prefix=f"{package.name}-{version}/"))
    digest = hashlib.sha256(data).hexdigest()
    destination = (out_dir or settings.work_dir / "sources" / package.name) / name
    _write_atomically(destination, data)
    log.info("wrote %s (sha256 %s)", destination, digest)
    return FetchedSource(
        package=package.name, version=version, ref=wanted, commit=commit, tarball=destination, sha256=digest
    )
