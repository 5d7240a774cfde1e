"""Publishing onto a full disk, and onto repository roots that cannot hold one (issue 15, points 8-9).

The full disk is a small tmpfs this test mounts itself (root only) and unmounts afterwards.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need, need_tool
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.fixtures.repotree import cli, snapshot
from tests.fixtures.rpms import make_many_rpms, make_rpm
from xcpbuild.errors import DiskFullError, UsageError
from xcpbuild.pipeline.publish import history, publish
from xcpbuild.pipeline.publish import repo as repolib

RELEASE = "8.3"
KiB = 1024
LINE = re.compile(r"no space left on (\S+) \(tmpfs \S+\) while (.+); (\d+) MiB needed, (\d+) MiB free")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgTestKey]:
    need_tool("rpmbuild", "rpmsign", "rpmkeys", "gpg", "createrepo_c")
    made = make_key(tmp_path_factory.mktemp("key"))
    yield made
    stop_agent(made)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of our own, unmounted at the end."""
    need(os.geteuid() == 0, "root (to mount a small tmpfs)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "xcpbuild-test-full", mount], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", mount], check=True)


def fill(mount: Path, leave: int) -> None:
    """Fill the filesystem, then give back ``leave`` bytes."""
    filler = mount / "filler"
    with open(filler, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\xff" * (64 * KiB))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))


def leftovers(root: Path) -> list[str]:
    found = [str(p) for p in root.rglob(f"{repolib.STAGING_PREFIX}*")]
    for repo in repolib.repo_dirs(root, RELEASE, "testing"):
        live = repolib.current_number(repo)
        found += [f"{repo.path}/generation {n}" for n in repolib.generation_numbers(repo) if live is None or n > live]
    return found


def test_a_publish_on_a_full_disk_fails_with_one_error_and_leaves_nothing(
    small_fs: Path, key: GpgTestKey, tmp_path: Path
) -> None:
    rpms = make_many_rpms(tmp_path / "rpms", "filler", 16)
    root = small_fs / "repo"
    publish.publish([rpms[0]], root, RELEASE, "testing", key=key, dnf_check=False)
    before = snapshot(root)
    steps: set[str] = set()
    outcomes = []
    # From no byte free to enough for a whole publish, a page at a time: each phase runs out once.
    for index, leave in enumerate(range(0, 60 * KiB, 4 * KiB), start=1):
        fill(small_fs, leave)
        try:
            publish.publish([rpms[index]], root, RELEASE, "testing", key=key, dnf_check=False)
        except DiskFullError as exc:
            match = LINE.fullmatch(exc.message)
            assert match, exc.message
            assert match.group(1) == str(small_fs)
            steps.add(match.group(2).split(" ")[0])
            outcomes.append("full")
            assert snapshot(root) == before, f"a failed publish changed the live repository ({exc.message})"
        else:
            outcomes.append("published")
            before = snapshot(root)
        assert leftovers(root) == [], leftovers(root)
        (small_fs / "filler").unlink()
    assert "full" in outcomes and outcomes[-1] == "published", outcomes
    # The disk ran out in several phases (staging, signing, metadata, the swap), each named.
    assert len(steps) >= 3, steps


def test_the_cli_says_one_line_and_exits_with_the_disk_full_code(
    small_fs: Path, key: GpgTestKey, tmp_path: Path
) -> None:
    rpm = make_rpm(tmp_path / "rpms", "hello", "1.0", "1")
    root = small_fs / "repo"
    fill(small_fs, 0)
    signing = ["--sign-key", key.fingerprint, "--gnupg-home", str(key.home)]
    done = cli(["publish", rpm, "--repo", root, "--release", RELEASE, "--channel", "testing", *signing])
    assert done.returncode == DiskFullError.exit_code == 16, done.stderr
    assert "Traceback" not in done.stderr and "gpg --list-secret-keys" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("xcpbuild: error:")]
    assert len(errors) == 1 and LINE.search(errors[0]), done.stderr
    assert "while staging" in errors[0]
    assert not list(small_fs.rglob(f"{repolib.STAGING_PREFIX}*"))


def test_a_repository_root_that_cannot_be_one_is_refused_in_one_line(tmp_path: Path) -> None:
    need_tool("rpmbuild")
    rpm = make_rpm(tmp_path / "rpms", "hello", "1.0", "1")
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    roots = (
        (a_file, "is a file"),
        (a_file / "below", "which is a file"),
        (Path("/proc/xcpbuild-repo"), "under /proc"),
        (Path("/proc"), "under /proc"),
    )
    for root, words in roots:
        calls = (
            lambda r: publish.publish([rpm], r, RELEASE, "testing"),
            lambda r: history.rollback(r, RELEASE, "testing"),
            lambda r: history.diff(r, RELEASE, "testing"),
            lambda r: publish.promote(r, RELEASE, "testing", "updates", ["hello"]),
        )
        for call in calls:
            with pytest.raises(UsageError) as info:
                call(root)
            assert words in info.value.message, info.value.message
        done = cli(["publish", rpm, "--repo", root, "--release", RELEASE, "--channel", "testing"])
        assert done.returncode == UsageError.exit_code, done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("xcpbuild: error:")]
        assert len(errors) == 1 and words in errors[0] and "Traceback" not in done.stderr, done.stderr
    assert a_file.read_text() == "x"
    assert not Path("/proc/xcpbuild-repo").exists()
