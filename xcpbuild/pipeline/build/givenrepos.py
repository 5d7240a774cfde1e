"""Repositories given to one build for its BuildRequires: ``--repo-url`` and ``--local-repo``.

Any XCP-ng-layout repository xcpbuild published (a channel's ``<arch>/`` folder
holding a signed ``repodata/``) can feed a build's BuildRequires, always with
``gpgcheck=1 repo_gpgcheck=1`` against ``--repo-key``. A ``file://`` repository
is copied into the build context of the build-dependency image layer, whose
``RUN`` has no network on an offline target; the build container itself never
sees a repository. Its ``repomd.xml`` digest keys that layer and the build, so
a re-published channel gives a new layer. ``http(s)://`` URLs are for targets
whose layers have the host's network (the xcp-ng-* targets).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.config import Settings
from xcpbuild.errors import UsageError
from xcpbuild.model.repo import check_channel, major_of
from xcpbuild.model.target import Target

# Where a layer's RUN finds the copied repositories, their key and their .repo file.
INSIDE = "/tmp/xcpbuild-given"
REPO_FILE = "xcpbuild-given.repo"
KEY_FILE = "repo-key.asc"
ARCH = "x86_64"


@dataclass(frozen=True)
class GivenRepo:
    """One repository of a build: its id, where dnf/yum reads it, and what its metadata is."""

    repo_id: str
    url: str  # as given (file:// or http(s)://)
    path: Path | None  # the local folder holding repodata/ (file:// only)
    repomd_sha256: str  # "" for http(s): the layer is keyed on the URL


@dataclass(frozen=True)
class GivenRepos:
    repos: tuple[GivenRepo, ...]
    key: Path
    key_sha256: str

    def keyed(self) -> list[str]:
        """What keys a build and its dependency layer: each URL and metadata digest, the key's digest."""
        return [f"{r.url}#{r.repomd_sha256}" for r in self.repos] + [f"key:{self.key_sha256}"]

    def repo_file(self) -> str:
        """The .repo file of the layer: every repository on, signatures and metadata checked, preferred."""
        sections = []
        for repo in self.repos:
            url = f"file://{INSIDE}/{repo.repo_id}/" if repo.path is not None else repo.url
            sections.append(
                f"[{repo.repo_id}]\nname=xcpbuild: {repo.url}\nbaseurl={url}\nenabled=1\n"
                f"gpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://{INSIDE}/{KEY_FILE}\npriority=1\n"
                "metadata_expire=0\n"
            )
        return "\n".join(sections)

    def stage(self, context: Path) -> None:
        """Copy the repositories (hard links where the file system allows), the key and the .repo file."""
        root = context / "given"
        root.mkdir()
        for repo in self.repos:
            if repo.path is not None:
                shutil.copytree(repo.path, root / repo.repo_id, copy_function=_link_or_copy)
        shutil.copy2(self.key, root / KEY_FILE)
        (root / REPO_FILE).write_text(self.repo_file())


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _local_folder(url: str, given_as: str) -> Path:
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if not (path / "repodata" / "repomd.xml").is_file():
        nested = path / ARCH / "repodata" / "repomd.xml"
        hint = (
            f"use {path / ARCH} (a channel's {ARCH}/ folder)"
            if nested.is_file()
            else ("publish it first: xcpbuild publish RPM… --repo ROOT --release X.Y --channel C")
        )
        raise UsageError(f"{given_as}: {path} holds no repodata/repomd.xml", hint=hint)
    if not (path / "repodata" / "repomd.xml.asc").is_file():
        raise UsageError(
            f"{given_as}: {path} is not signed (no repodata/repomd.xml.asc); builds check repo_gpgcheck",
            hint="publish it with a signing key (xcpbuild publish signs unless told otherwise)",
        )
    return path


def resolve(
    settings: Settings,
    target: Target,
    *,
    urls: Sequence[str],
    channels: Sequence[str],
    key: Path | None,
) -> GivenRepos | None:
    """The repositories of ``--repo-url`` and ``--local-repo`` for ``target``; None when none is given."""
    if not urls and not channels:
        if key is not None:
            raise UsageError("--repo-key is given but no --repo-url or --local-repo", hint="add the repository")
        return None
    if target.builddeps == "none":
        raise UsageError(f"target {target.name} installs no build dependencies: --repo-url/--local-repo change nothing")
    if key is None:
        raise UsageError(
            "--repo-url/--local-repo need --repo-key FILE: the public key the repository is signed with",
            hint="gpgcheck and repo_gpgcheck are always on (gpg --armor --export KEYID > key.asc)",
        )
    try:
        key_data = key.read_bytes()
    except OSError as exc:
        raise UsageError(f"--repo-key {key}: {exc.strerror}") from exc
    if not key_data.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"):
        raise UsageError(f"--repo-key {key} is not an armored public key", hint="gpg --armor --export KEYID")
    found: list[GivenRepo] = []
    tree = settings.work_dir / "repo" / major_of(target.xcpng_release) / target.xcpng_release
    wanted = [(url, f"--repo-url {url}") for url in urls]
    wanted += [((tree / check_channel(c) / ARCH).as_uri(), f"--local-repo {c}") for c in channels]
    for index, (url, given_as) in enumerate(wanted, start=1):
        scheme = urllib.parse.urlsplit(url).scheme
        repo_id = f"xcpbuild-given-{index}"
        if scheme == "file":
            path = _local_folder(url, given_as)
            digest = hashlib.sha256((path / "repodata" / "repomd.xml").read_bytes()).hexdigest()
            found.append(GivenRepo(repo_id, url, path, digest))
        elif scheme in ("http", "https"):
            if not target.build_network:
                raise UsageError(
                    f"{given_as}: target {target.name} builds offline; its repositories are local folders",
                    hint="give a file:// URL of a repository on this machine",
                )
            if "@" in urllib.parse.urlsplit(url).netloc:
                raise UsageError(f"{given_as}: credentials in a URL would be written into the image")
            found.append(GivenRepo(repo_id, url, None, ""))
        else:
            raise UsageError(
                f"{given_as} is not a file:// or http(s):// URL", hint="e.g. file:///srv/repo/8/8.3/testing/x86_64"
            )
    return GivenRepos(tuple(found), key, hashlib.sha256(key_data).hexdigest())
