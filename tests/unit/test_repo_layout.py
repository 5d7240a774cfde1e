"""Repository layout, generations, swap, recovery, version order and diffs (no external tools)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from xcpbuild.adapters.createrepo import PackageRecord
from xcpbuild.adapters.rpmsign import _parse
from xcpbuild.errors import PublishError, UsageError
from xcpbuild.model import repo
from xcpbuild.pipeline.publish import crashpoints, evr
from xcpbuild.pipeline.publish import repo as repolib
from xcpbuild.pipeline.publish.repo import Generation


def test_layout_follows_xcpng() -> None:
    binary, source = repolib.repo_dirs(Path("/srv"), "8.3", "testing")
    assert binary.path == Path("/srv/8/8.3/testing/x86_64") and binary.packages_dir.name == "Packages"
    assert source.path == Path("/srv/8/8.3/testing/Source") and source.packages_dir.name == "SPackages"


@pytest.mark.parametrize(
    "release", ["8", "8.3.1", "v8.3", "", "8.x", "8.3\n", " 8.3", "\u0668.\u0663", "08.03", "8.03", "1" * 20 + ".3"]
)
def test_release_must_be_x_y(release: str) -> None:
    with pytest.raises(UsageError, match=r"X\.Y"):
        repo.major_of(release)


def test_a_release_has_one_spelling() -> None:
    assert repo.parse_release("8.3") == "8.3" and repo.major_of("10.0") == "10"


def test_unknown_channel_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown channel 'nightly'"):
        repo.check_channel("nightly")
    for channel in repo.CHANNELS:
        assert repo.check_channel(channel) == channel


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0", "1.0", 0),
        ("1.0", "1.1", -1),
        ("1.10", "1.9", 1),
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0^git1", -1),
        ("1.0a", "1.0", 1),
        ("1.0", "1.0.1", -1),
        ("2", "10", -1),
        ("1.a", "1.1", -1),
        ("1.0.xcpng8.3", "1.0.xcpng8.2", 1),
    ],
)
def test_rpmvercmp_matches_rpm_order(a: str, b: str, expected: int) -> None:
    assert evr.rpmvercmp(a, b) == expected
    assert evr.rpmvercmp(b, a) == -expected


def _pkg(name: str, version: str, release: str = "1", arch: str = "x86_64", epoch: str = "0") -> PackageRecord:
    href = f"Packages/{name}-{version}-{release}.{arch}.rpm"
    return PackageRecord(href, name, epoch, version, release, arch, pkgid="", size=0, stat=(0, 0, 0))


def test_diff_reports_added_removed_upgraded_downgraded() -> None:
    old = [_pkg("a", "1.0"), _pkg("b", "1.0"), _pkg("c", "2.0"), _pkg("d", "1.0")]
    new = [_pkg("a", "1.0"), _pkg("b", "1.0"), _pkg("b", "1.1"), _pkg("c", "1.0", epoch="0"), _pkg("e", "1.0")]
    changes = {(c.change, c.name, c.old, c.new) for c in evr.diff_packages(old, new)}
    assert changes == {
        ("upgraded", "b", "1.0-1", "1.1-1"),
        ("downgraded", "c", "2.0-1", "1.0-1"),
        ("removed", "d", "1.0-1", None),
        ("added", "e", None, "1.0-1"),
    }


def test_epoch_wins_over_version() -> None:
    assert evr.evr_compare(_pkg("a", "1.0", epoch="1"), _pkg("a", "9.0")) == 1


def _make_generation(
    repo: repolib.RepoDir, number: int, parent: int | None, hrefs: tuple[str, ...] = (), created: float = 0.0
) -> None:
    directory = repo.generation_dir(number)
    (directory / "repodata").mkdir(parents=True)
    (directory / "repodata" / "repomd.xml").write_text(f"generation {number}\n")
    packages = [PackageRecord(h, Path(h).stem, "0", "1", "1", "noarch", "", 0, (0, 0, 0)) for h in hrefs]
    repolib.write_generation(directory, Generation(number, parent, "publish", packages, created=created))


def test_swap_is_a_symlink_rename_and_recover_removes_leftovers(tmp_path: Path) -> None:
    repo, _ = repolib.repo_dirs(tmp_path, "8.3", "lab")
    repo.packages_dir.mkdir(parents=True)
    old_unnamed = repo.packages_dir / "predates-xcpbuild.rpm"
    old_unnamed.write_text("an old file")
    os.utime(old_unnamed, (1_000_000, 1_000_000))
    assert repolib.current_number(repo) is None
    _make_generation(repo, 1, None)
    repolib.swap(repo, 1)
    assert repo.repodata.is_symlink()
    assert (repo.repodata / "repomd.xml").read_text() == "generation 1\n"
    (repo.packages_dir / "named.rpm").write_text("a published package")
    _make_generation(repo, 2, 1, ("Packages/named.rpm",), created=time.time() + 1)
    repolib.swap(repo, 2)
    assert repolib.current_number(repo) == 2
    assert (repo.repodata / "repomd.xml").read_text() == "generation 2\n"
    # What a killed publisher leaves: a staging dir, a temp symlink, a placed package, an unswapped generation.
    (repo.path / ".staging-123-abcd" / "incoming").mkdir(parents=True)
    (repo.path / "repodata.tmp-123").symlink_to(".generations/3/repodata")
    placed = repo.packages_dir / "placed-never-live.rpm"
    placed.write_text("placed")
    os.utime(placed, (time.time() + 5, time.time() + 5))
    _make_generation(repo, 3, 2, ("Packages/named.rpm", "Packages/placed-never-live.rpm"))
    removed = repolib.recover(repo)
    assert sorted(removed) == sorted(
        [".staging-123-abcd", "repodata.tmp-123", ".generations/3", "Packages/placed-never-live.rpm"]
    )
    assert repolib.generation_numbers(repo) == [1, 2]
    assert sorted(p.name for p in repo.packages_dir.iterdir()) == ["named.rpm", "predates-xcpbuild.rpm"]
    assert repolib.current_number(repo) == 2


def test_prune_keeps_newest_and_the_live_parent(tmp_path: Path) -> None:
    repo, _ = repolib.repo_dirs(tmp_path, "8.3", "lab")
    for number in range(1, 7):
        _make_generation(repo, number, number - 1 if number > 1 else None)
    repolib.swap(repo, 6)
    assert repolib.prune(repo, keep=3) == [1, 2, 3]
    assert repolib.generation_numbers(repo) == [4, 5, 6]
    # A rollback generation whose parent is old: that parent is protected.
    _make_generation(repo, 7, 4)
    repolib.swap(repo, 7)
    assert repolib.prune(repo, keep=2) == [5]
    assert repolib.generation_numbers(repo) == [4, 6, 7]


def test_foreign_repodata_directory_is_refused(tmp_path: Path) -> None:
    repo, _ = repolib.repo_dirs(tmp_path, "8.3", "lab")
    repo.repodata.mkdir(parents=True)
    with pytest.raises(PublishError, match="not a symlink managed by xcpbuild"):
        repolib.current_number(repo)


def test_rpmkeys_output_is_judged_per_file(tmp_path: Path) -> None:
    good, other, unsigned, broken = (tmp_path / n for n in ("good.rpm", "other.rpm", "unsigned.rpm", "broken.rpm"))
    output = f"""{good}:
    Header V4 RSA/SHA256 Signature, key ID e7e377c2: OK
    Header SHA256 digest: OK
    Payload SHA256 digest: OK
    V4 RSA/SHA256 Signature, key ID e7e377c2: OK
{other}:
    Header V4 RSA/SHA256 Signature, key ID 11111111: NOKEY
    Header SHA256 digest: OK
{unsigned}:
    Header SHA256 digest: OK
    Payload SHA256 digest: OK
{broken}:
    Header V4 RSA/SHA256 Signature, key ID e7e377c2: OK
    Payload SHA256 digest: BAD (Expected abc != def)
warning: Could not set GPG_TTY to stdin: Inappropriate ioctl for device
"""
    problems = {p.path.name: p.detail for p in _parse([good, other, unsigned, broken], output, "e7e377c2")}
    assert set(problems) == {"other.rpm", "unsigned.rpm", "broken.rpm"}
    assert "NOKEY" in problems["other.rpm"]
    assert "no header signature" in problems["unsigned.rpm"]
    assert "BAD" in problems["broken.rpm"]
    # Without a key only digests count.
    assert {p.path.name for p in _parse([good, unsigned, broken], output, None)} == {"broken.rpm"}


def test_crash_point_hook_stops_only_at_the_named_occurrence(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append(sig))
    monkeypatch.setattr(crashpoints, "_seen", Counter())
    monkeypatch.setenv(crashpoints.ENV, "placed:2")
    crashpoints.reach("placed")
    crashpoints.reach("staged")
    assert sent == []
    crashpoints.reach("placed")
    assert sent == [signal.SIGSTOP]
    monkeypatch.delenv(crashpoints.ENV)
    crashpoints.reach("placed")
    assert sent == [signal.SIGSTOP]


def _record(name: str) -> PackageRecord:
    return PackageRecord(f"Packages/{name}-1-1.noarch.rpm", name, "0", "1", "1", "noarch", "id", 1, (1, 2, 3))


def test_a_generation_record_is_read_once_until_it_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rd = repolib.RepoDir(tmp_path / "x86_64", "Packages")
    rd.generation_dir(1).mkdir(parents=True)
    reads = Counter[str]()
    real = Generation.from_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Generation], data: dict[str, object]) -> Generation:
        reads["from_json"] += 1
        return real(cls, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(Generation, "from_json", classmethod(counting))
    # The record this process wrote is what it reads back, once it says where its directory went.
    staging = tmp_path / "x86_64" / ".staging-1"
    staging.mkdir()
    written = Generation(1, None, "publish", [_record("a")], {"a": "d"})
    repolib.write_generation(staging, written)
    rd.generation_dir(1).rmdir()
    staging.rename(rd.generation_dir(1))
    repolib.remember_generation(rd.generation_dir(1), written)
    assert repolib.load_generation(rd, 1) is written and reads["from_json"] == 0
    # A record another process replaced (a new file renamed over it) is read, once.
    other = tmp_path / "other.json"
    other.write_text(json.dumps(Generation(1, None, "rollback", [_record("b")], {}).to_json()))
    other.replace(rd.generation_dir(1) / "generation.json")
    again = repolib.load_generation(rd, 1)
    assert again.action == "rollback" and again.hrefs() == ["Packages/b-1-1.noarch.rpm"]
    assert repolib.load_generation(rd, 1) is again and reads["from_json"] == 1


def test_sync_filesystem_syncs_and_reports_a_missing_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    repolib.sync_filesystem(tmp_path)
    with pytest.raises(FileNotFoundError):
        repolib.sync_filesystem(tmp_path / "missing")


def test_href_name_is_the_file_name() -> None:
    assert repolib.href_name("Packages/a-1-1.noarch.rpm") == "a-1-1.noarch.rpm"
    assert repolib.href_name("a.rpm") == "a.rpm"
