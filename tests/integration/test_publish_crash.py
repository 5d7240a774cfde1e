"""Crash safety: SIGKILL the publisher at every phase; the live repo must stay whole.

The publisher freezes itself at a named crash point (XCPBUILD_TEST_PAUSE_AT, see
xcpbuild/pipeline/crashpoints.py), the test SIGKILLs it there, then checks the
live repo the way a client would: every file repomd.xml names exists with its
checksum, the signature verifies, and a real dnf (gpgcheck + repo_gpgcheck)
installs the package — the version from either the previous or the new
generation. Each next publish must recover without help.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.fixtures.buildfolders import attested_build
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.fixtures.repotree import Arg, kill, start, wait_stopped
from tests.fixtures.rpms import make_rpm, make_srpm
from xcpbuild.adapters import createrepo, dnf, gpg
from xcpbuild.pipeline.publish import attest, crashpoints, publish
from xcpbuild.pipeline.publish import repo as repolib

RELEASE = "8.3"
CHANNEL = "testing"

# (point, occurrence): a publish of two binary RPMs and one SRPM passes each
# repo-dir phase twice (x86_64, then Source) and places three files.
KILL_POINTS: list[str] = [
    "locked",
    "recovered",
    "staged:1",
    "signed:1",
    "verified:1",
    "placed:1",
    "placed:2",
    "metadata:1",
    "repomd-signed:1",
    "attested:1",
    "checked:1",
    "dnf-checked:1",
    "staged:2",
    "signed:2",
    "verified:2",
    "placed:3",
    "metadata:2",
    "repomd-signed:2",
    "attested:2",
    "checked:2",
    "generation:1",
    "swapped:1",
    "generation:2",
    "swapped:2",
    "pruned",
]


def test_kill_points_cover_every_phase() -> None:
    assert {p.split(":")[0] for p in KILL_POINTS} == set(crashpoints.POINTS)
    assert len(KILL_POINTS) >= 20


def _versions_served(root: Path, key: GpgTestKey) -> str:
    """Check the live x86_64 and Source repos completely; return the crashpkg version dnf installs."""
    binary, source = repolib.repo_dirs(root, RELEASE, CHANNEL)
    for repo in (binary, source):
        assert createrepo.check_repo(repo.path, []) == [], repo.path
        gpg.verify_detached(key.public_key, repo.repodata / "repomd.xml", repo.repodata / "repomd.xml.asc")
    installed = dnf.install([dnf.Repo("live", binary.path)], ["crashpkg", "crashlib"], key.public_key, RELEASE)
    versions = {line.rsplit("-", 2)[1] for line in installed.installed}
    assert len(versions) == 1, installed.installed  # both packages from one generation
    return versions.pop()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    need_tool("rpmbuild", "rpmsign", "rpmkeys", "gpg", "dnf")
    made = make_key(tmp_path_factory.mktemp("crashkey"))
    yield made
    stop_agent(made)


def test_sigkill_at_every_phase_leaves_a_whole_repo(tmp_path: Path, key: GpgTestKey) -> None:
    root = tmp_path / "repo"
    builds = tmp_path / "builds"

    def release_of(version: int) -> list[Path]:
        v = f"{version}.0"
        return [make_rpm(builds, "crashpkg", v), make_rpm(builds, "crashlib", v), make_srpm(builds, "crashpkg", v)]

    common: list[Arg] = [
        "--repo",
        root,
        "--release",
        RELEASE,
        "--channel",
        CHANNEL,
        "--sign-key",
        key.fingerprint,
        "--gnupg-home",
        key.home,
    ]
    publish.publish(release_of(1), root, RELEASE, CHANNEL, key=key)
    served = "1.0"
    assert _versions_served(root, key) == served
    went_live = {served}

    for index, point in enumerate(KILL_POINTS, start=2):
        new = f"{index}.0"
        proc = start(["publish", *release_of(index), *common], point)
        assert wait_stopped(proc), f"publisher finished without reaching {point}: {proc.stderr}"
        kill(proc)
        now = _versions_served(root, key)
        assert now in (served, new), (point, now, served, new)
        if point in ("swapped:1", "generation:2", "swapped:2", "pruned"):
            assert now == new, point  # the x86_64 swap had happened
        elif not point.startswith("swapped"):
            assert now == served, point
        served = now
        went_live.add(now)

    # A normal publish recovers from the last crash by itself and leaves nothing behind.
    final = len(KILL_POINTS) + 2
    report = publish.publish(release_of(final), root, RELEASE, CHANNEL, key=key)
    assert report.changed
    assert _versions_served(root, key) == f"{final}.0"
    went_live.add(f"{final}.0")
    for repo in repolib.repo_dirs(root, RELEASE, CHANNEL):
        leftovers = [p.name for p in repo.path.iterdir() if p.name.startswith((".staging", "repodata.tmp"))]
        assert leftovers == []
        assert len(repolib.generation_numbers(repo)) <= repolib.KEEP_GENERATIONS
        live_number = repolib.current_number(repo)
        assert live_number == max(repolib.generation_numbers(repo))
        # Packages placed by a publish killed before its swap were removed by the next one.
        versions = {p.name.rsplit("-", 2)[1] for p in repo.packages_dir.iterdir()}
        assert versions <= went_live, sorted(versions - went_live)


# Around the swaps, where provenance shipped after them would be missing from a live generation.
PROVENANCE_KILL_POINTS = [
    "attested:1",
    "generation:1",
    "swapped:1",
    "attested:2",
    "generation:2",
    "swapped:2",
    "pruned",
]


def _provenance_whole(root: Path, key: GpgTestKey) -> int:
    """Every package the live metadata names verifies against its signed provenance; how many there are."""
    checked = 0
    for repo in repolib.repo_dirs(root, RELEASE, CHANNEL):
        generation = repolib.current_generation(repo)
        assert generation is not None
        for href in generation.hrefs():
            check = attest.verify(str(repo.path / href), key.public_key)  # VerifyError names what is missing
            assert "RPM sha256" in check.checked
            checked += 1
    return checked


def test_sigkill_around_the_swap_never_serves_a_package_without_its_provenance(tmp_path: Path, key: GpgTestKey) -> None:
    root = tmp_path / "repo"
    builds = tmp_path / "builds"

    def release_of(version: int) -> list[Path]:
        v = f"{version}.0"
        made = [make_rpm(builds, "crashpkg", v), make_rpm(builds, "crashlib", v), make_srpm(builds, "crashpkg", v)]
        return attested_build(tmp_path / "built" / v, made)

    common: list[Arg] = ["--repo", root, "--release", RELEASE, "--channel", CHANNEL, "--sign-key", key.fingerprint,
                         "--gnupg-home", key.home]  # fmt: skip
    report = publish.publish(release_of(1), root, RELEASE, CHANNEL, key=key)
    assert sorted(n for r in report.repos for n in r.provenance) == [
        "crashlib-1.0-1.noarch.intoto.json", "crashpkg-1.0-1.noarch.intoto.json", "crashpkg-1.0-1.src.intoto.json",
    ]  # fmt: skip
    assert _provenance_whole(root, key) == 3
    served = "1.0"
    for index, point in enumerate(PROVENANCE_KILL_POINTS, start=2):
        new = f"{index}.0"
        proc = start(["publish", *release_of(index), *common], point)
        assert wait_stopped(proc), f"publisher finished without reaching {point}: {proc.stderr}"
        kill(proc)
        now = _versions_served(root, key)
        assert now in (served, new), (point, now, served, new)
        _provenance_whole(root, key)  # whichever generation is live carries the provenance of all it names
        served = now
    report = publish.publish(release_of(99), root, RELEASE, CHANNEL, key=key)
    assert report.changed and _versions_served(root, key) == "99.0"
    live = _provenance_whole(root, key)
    assert live >= 6, live  # the first release's envelopes were carried from generation to generation
