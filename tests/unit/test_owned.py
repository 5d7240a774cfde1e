"""Owned temporary directories: named after their owner, removed with what they started, swept once dead."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from xcpbuild.adapters import owned, process


def _dead_owner() -> owned.Owner:
    """The identity of a process that really ran and is now gone."""
    child = subprocess.Popen(["sleep", "30"])
    start = owned.start_of(child.pid)
    assert start is not None
    child.kill()
    child.wait()
    return owned.Owner(owned.this_host(), child.pid, start)


def test_the_name_records_this_process_and_the_directory_goes_at_the_end(tmp_path: Path) -> None:
    with owned.tempdir("job", parent=tmp_path) as path:
        assert path.parent == tmp_path and path.is_dir()
        assert owned.owner_of(path, "job") == owned.me()
        assert not owned.me().is_gone()
        (path / "inside").write_text("x")
    assert not path.exists()


def test_removed_on_an_exception_too(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), owned.tempdir("job", parent=tmp_path) as path:
        raise RuntimeError("boom")
    assert not path.exists()


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # what the CLI's SIGTERM handler does


@pytest.mark.parametrize("moment", ["made", "removing"])
def test_a_sigterm_while_the_directory_is_made_or_removed_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """The signal is acted on once the directory is handed over, or once it is gone, never in between."""
    real_make, real_remove = owned._make, owned.remove

    def make(base: Path, prefix: str, *, directory: bool = True) -> Path:
        path = real_make(base, prefix, directory=directory)
        if moment == "made":
            os.kill(os.getpid(), signal.SIGTERM)  # right after mkdir, before anyone holds the path
        return path

    def remove(path: Path) -> None:
        if moment == "removing":
            os.kill(os.getpid(), signal.SIGTERM)  # before the removal has begun
        real_remove(path)

    monkeypatch.setattr(owned, "_make", make)
    monkeypatch.setattr(owned, "remove", remove)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with pytest.raises(SystemExit), owned.tempdir("job", parent=tmp_path):
            time.sleep(0.5)  # not reached when the signal lands as the directory is made
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []


def test_a_dead_owners_leftovers_are_swept_by_the_next_use(tmp_path: Path) -> None:
    dead = _dead_owner()
    leftover = tmp_path / f".staging.{dead.token}.0"
    (leftover / "SOURCES").mkdir(parents=True)
    # The same pid started at another time is someone else: still a dead owner.
    reused = tmp_path / f".staging.{os.getpid()}-{owned.me().start + 1}.0"
    reused.mkdir()
    alive = tmp_path / f".staging.{owned.me().token}.999"
    alive.mkdir()
    other_prefix = tmp_path / f"publish.{dead.token}.0"
    other_prefix.mkdir()
    not_ours = tmp_path / "result-folder"
    not_ours.mkdir()
    with owned.tempdir(".staging", parent=tmp_path):
        pass
    assert not leftover.exists() and not reused.exists()
    assert alive.exists(), "a live owner's directory was swept"
    assert other_prefix.exists() and not_ours.exists(), "a sweep reached beyond its own prefix"
    assert sorted(owned.sweep(tmp_path)) == [other_prefix]


def test_owners_of_other_hosts_are_never_taken_for_dead() -> None:
    dead = _dead_owner()
    assert dead.is_gone()
    elsewhere = owned.Owner("another-host", dead.pid, dead.start)
    assert not elsewhere.is_gone()
    assert owned.Owner.from_label(dead.label) == dead
    assert owned.Owner.from_label("garbage") is None


def test_the_default_root_is_the_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(owned._run, "root", None)
    monkeypatch.setenv("XCPBUILD_CACHE", str(tmp_path / "cache"))
    assert owned.root() == (tmp_path / "cache" / "tmp").resolve()
    owned.use_root(tmp_path / "elsewhere")
    assert owned.root() == tmp_path / "elsewhere"


def test_a_process_whose_start_cannot_be_read_is_not_taken_for_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owned, "start_of", lambda _pid: owned._UNREADABLE)
    assert not owned.Owner(owned.this_host(), 1, 12345).is_gone()


def test_a_scratch_file_is_renamed_into_place_or_removed(tmp_path: Path) -> None:
    final = tmp_path / "x.tar.gz"
    with owned.scratch_file(".x.tar.gz", tmp_path) as tmp:
        assert owned.owner_of(tmp, ".x.tar.gz") == owned.me()
        tmp.write_bytes(b"data")
        tmp.replace(final)
    with pytest.raises(RuntimeError), owned.scratch_file(".x.tar.gz", tmp_path) as tmp:
        raise RuntimeError("killed while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tar.gz"]


def test_the_root_is_swept_of_every_dead_owners_leftovers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A prefix no longer used (an older version's) is swept from the root too."""
    monkeypatch.setattr(owned._run, "root", tmp_path)
    monkeypatch.setattr(owned._run, "done", set())
    dead = _dead_owner()
    old = tmp_path / f"publish.{dead.token}.0"
    old.mkdir()
    with owned.tempdir("dnf"):
        pass
    assert not old.exists()


def test_a_keyring_with_an_agent_has_it_stopped_and_one_without_costs_no_gpgconf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import need_tool

    need_tool("gpg", "gpg-agent", "gpgconf")
    with owned.tempdir("keys", parent=tmp_path) as path:
        used, read = path / "used", path / "read"
        for home in (used, read):
            home.mkdir(mode=0o700)
            (home / "pubring.kbx").write_bytes(b"")
        # gpg starts its agent as `gpg-agent --homedir HOME --use-standard-socket --daemon`.
        subprocess.run(
            ["gpg-agent", "--homedir", str(used), "--daemon"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert str(used) in owned._agent_homes() and str(read) not in owned._agent_homes()
        killed: list[str] = []
        real_run = process.run

        def counting(argv, **kwargs):  # type: ignore[no-untyped-def]
            killed.append(str(argv[2]))
            return real_run(argv, **kwargs)

        monkeypatch.setattr(process, "run", counting)
    assert killed == [str(used)]
    assert str(used) not in owned._agent_homes()
