"""Build logic that needs no engine: cache keys, reproducible project tarballs, log parsing."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

from tests.conftest import PROJECT_ROOT
from xcpbuild.pipeline.build import build
from xcpbuild.pipeline.build.build import Input
from xcpbuild.pipeline.sources import project as project_source

INPUTS = [
    Input("a.tar.gz", "source", "1" * 64),
    Input("fix.patch", "patch", "2" * 64),
    Input("a.spec", "spec", "3" * 64),
]


def test_cache_key_covers_every_input_the_image_the_stage_and_the_target() -> None:
    key = build.cache_key(INPUTS, "img:1", "sha256:aa", "rpm", "local")
    assert key == build.cache_key(list(reversed(INPUTS)), "img:1", "sha256:aa", "rpm", "local")
    changed = [INPUTS[0], Input("fix.patch", "patch", "4" * 64), INPUTS[2]]
    others = {
        build.cache_key(changed, "img:1", "sha256:aa", "rpm", "local"),
        build.cache_key(INPUTS, "img:2", "sha256:aa", "rpm", "local"),
        build.cache_key(INPUTS, "img:1", "sha256:bb", "rpm", "local"),
        build.cache_key(INPUTS, "img:1", "sha256:aa", "srpm", "local"),
        build.cache_key(INPUTS, "img:1", "sha256:aa", "rpm", "xcp-ng-8.2"),
        build.cache_key(INPUTS[:2], "img:1", "sha256:aa", "rpm", "local"),
    }
    assert key not in others and len(others) == 6
    assert build.folder_name("vhd-tool", "0.20.0", "4.2", "local", key) == f"vhd-tool-0.20.0-4.2-local-{key[:12]}"


def test_project_tarball_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    shutil.copytree(PROJECT_ROOT / "xcpbuild", root / "xcpbuild")
    (root / "xcpbuild" / "exportserver" / "__pycache__").mkdir(exist_ok=True)
    (root / "xcpbuild" / "exportserver" / "__pycache__" / "x.pyc").write_bytes(b"")
    paths = ("xcpbuild/__init__.py", "xcpbuild/exportserver")
    first = project_source.make_tarball(root, paths, "pkg-1.0", tmp_path / "a.tar.gz")
    os.utime(root / "xcpbuild" / "exportserver" / "__init__.py", (1, 1))  # a new mtime changes nothing
    second = project_source.make_tarball(root, paths, "pkg-1.0", tmp_path / "b.tar.gz")
    assert first == second == hashlib.sha256((tmp_path / "b.tar.gz").read_bytes()).hexdigest()
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        names = tar.getnames()
        members = tar.getmembers()
    assert names[0] == "pkg-1.0" and "pkg-1.0/xcpbuild/exportserver/__init__.py" in names
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert {m.mtime for m in members} == {project_source.FIXED_MTIME} and {m.uid for m in members} == {0}
    other = project_source.make_tarball(root, paths, "pkg-1.1", tmp_path / "c.tar.gz")
    assert other != first


def test_the_failing_patch_is_the_last_one_rpmbuild_mentioned_before_prep_failed() -> None:
    series = ["one.patch", "two.patch"]
    lines = [
        "Executing(%prep): /bin/sh -e /var/tmp/rpm-tmp.x",
        "+ /usr/lib/rpm/rpmuncompress /b/SOURCES/one.patch",
        "+ /usr/bin/patch -p1 -s --fuzz=0 --no-backup-if-mismatch -f",
        "+ /usr/lib/rpm/rpmuncompress /b/SOURCES/two.patch",
        "+ /usr/bin/patch -p1 -s --fuzz=0 --no-backup-if-mismatch -f",
        "1 out of 2 hunks FAILED -- saving rejects to file src/channels.ml.rej",
        "error: Bad exit status from /var/tmp/rpm-tmp.x (%prep)",
        "    Bad exit status from /var/tmp/rpm-tmp.x (%prep)",
    ]
    assert build.failing_patch(lines, series) == "two.patch"
    assert build.failing_patch([*lines[:3], "error: Bad exit status from /x (%build)"], series) is None
    assert build.failing_patch(lines[:1] + lines[5:], series) is None
    # stdout and stderr interleaved mid-line, as a multiplexed stream can deliver them
    mixed = [
        *lines[:4],
        "+ + /usr/bin/patch -p1",
        "error: ",
        "RPM build errors:",
        "    Bad exit status from /x (%prep)",
    ]
    assert build.failing_patch(mixed, series) == "two.patch"


def test_build_requires_are_read_from_the_spec() -> None:
    text = "Name: x\nBuildRequires: ocaml-camlp4-devel\nBuildRequires:  gcc >= 4.8, make\nRequires: python3\n"
    assert build.build_requires(text) == ["ocaml-camlp4-devel", "gcc", "make"]
    assert build.build_requires("Name: x\nRequires: python3\n") == []


def test_credentials_never_reach_the_record() -> None:
    assert build._without_credentials("https://user:s3cret@git.example.invalid/x.git") == (
        "https://git.example.invalid/x.git"
    )
    assert build._without_credentials("/srv/git/vhd-tool") == "/srv/git/vhd-tool"
