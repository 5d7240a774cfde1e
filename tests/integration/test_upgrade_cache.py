"""The upgrade check's kept installroot answers exactly as a fresh one (real rpmbuild, createrepo_c, dnf, rpm).

Two identical repository trees get the same sequence of publishes (and a rollback);
in one the check keeps its recorded root between publishes (``.upgrade-roots``), in
the other that directory is deleted before every publish, so each check records the
live packages from scratch. Every step must end the same way in both: the same
upgraded set, or the same refusal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.fixtures.repotree import snapshot
from tests.fixtures.rpms import make_rpm
from xcpbuild.adapters import dnf
from xcpbuild.errors import VerifyError
from xcpbuild.pipeline.publish import history, publish, upgrade_check
from xcpbuild.pipeline.publish import repo as repolib

RELEASE = "8.3"
CHANNEL = "testing"


@pytest.fixture(autouse=True)
def _tools() -> None:
    need_tool("rpmbuild", "rpm", "dnf", "createrepo_c")


def _binary(root: Path) -> repolib.RepoDir:
    return repolib.repo_dirs(root, RELEASE, CHANNEL)[0]


def _cached(root: Path) -> Path:
    return _binary(root).path / upgrade_check.ROOTS / CHANNEL


def _outcome(root: Path, rpms: list[Path]) -> tuple[str, list[str], str]:
    """(answer, upgraded set, how the root was recorded) of one publish."""
    try:
        report = publish.publish(rpms, root, RELEASE, CHANNEL)
    except VerifyError as exc:
        return f"refused: {exc.message}", [], ""
    (binary,) = [r for r in report.repos if r.path.name == "x86_64"]
    return "published", binary.upgrade_checked, binary.upgrade_root


def test_the_kept_root_answers_as_a_fresh_one_over_a_sequence_of_publishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, fresh = tmp_path / "kept", tmp_path / "fresh"

    def rpm(name: str, version: str = "1.0", requires: Sequence[str] = (), obsoletes: Sequence[str] = ()) -> Path:
        return make_rpm(tmp_path / "rpms", name, version=version, requires=requires, obsoletes=obsoletes)

    def both(rpms: list[Path]) -> tuple[str, list[str], str]:
        shutil.rmtree(_binary(fresh).path / upgrade_check.ROOTS, ignore_errors=True)
        with monkeypatch.context() as patched:
            patched.setattr(dnf, "UPGRADE_SOLVER", "transaction")
            fresh_answer = _outcome(fresh, rpms)
        kept_answer = _outcome(kept, rpms)
        assert kept_answer[:2] == fresh_answer[:2]
        assert fresh_answer[2] in ("fresh", "")
        return kept_answer

    both([rpm("app", requires=["libfoo < 2"]), rpm("libfoo"), rpm("old")])  # nothing live yet: no check
    assert not _cached(kept).exists()
    # An upgraded package: the first check records every live package into a fresh root and keeps it.
    live = ["app-1.0-1.noarch", "libfoo-1.1-1.noarch", "old-1.0-1.noarch"]
    assert both([rpm("libfoo", "1.1")]) == ("published", live, "fresh")
    assert (_cached(kept) / "manifest.json").exists()
    # A new package: the kept root trades libfoo-1.0 for libfoo-1.1.
    assert both([rpm("extra")]) == ("published", live, "reused, 2 kept, 1 added")
    # A package obsoleting another: the kept root gains extra; old is upgraded to new.
    answer, upgraded, how = both([rpm("new", obsoletes=["old < 2"])])
    assert (answer, how) == ("published", "reused, 3 kept, 1 added")
    assert upgraded == ["app-1.0-1.noarch", "extra-1.0-1.noarch", "libfoo-1.1-1.noarch", "new-1.0-1.noarch"]
    # Serving both new and old, the live channel does not resolve: repoclosure still refuses a broken update.
    answer, _, _ = both([rpm("libfoo", "2.0")])
    assert answer == "refused: repoclosure: app-1.0-1.noarch has unresolved dependencies: libfoo < 2", answer
    for root in (kept, fresh):  # serve the generation before new again
        history.rollback(root, RELEASE, CHANNEL)
    # A broken upgrade is refused by both, with the same words, and leaves the kept root as it was.
    before = snapshot(_binary(kept).path)
    answer, _, _ = both([rpm("libfoo", "2.0")])
    assert answer.startswith("refused: dnf cannot upgrade the live packages") and "libfoo < 2" in answer, answer
    assert snapshot(_binary(kept).path) == before
    # A package leaves the live set (one more rollback, to before extra): the kept root drops it.
    for root in (kept, fresh):
        history.rollback(root, RELEASE, CHANNEL)
    assert both([rpm("later")]) == ("published", live, "reused, 3 kept, 0 added")
    assert both([rpm("libfoo", "1.2")])[2] == "reused, 3 kept, 1 added"


def _tamper_rpmdb(cached: Path) -> None:
    """The cached rpmdb loses a package its manifest still names (what a torn update could leave)."""
    subprocess.run(
        ["rpm", "--root", str(cached / "root"), "-e", "--justdb", "--nodeps", "--noscripts", "app-1.0-1.noarch"],
        check=True, capture_output=True,
    )  # fmt: skip


def _garble_manifest(cached: Path) -> None:
    (cached / "manifest.json").write_text("{not json")


def _drop_adoption(cached: Path) -> None:
    """A crash between adopt's two renames: no root, an .old-* leftover."""
    cached.rename(cached.parent / ".old-crashed")


@pytest.mark.parametrize("damage", [_tamper_rpmdb, _garble_manifest, _drop_adoption])
def test_a_kept_root_that_does_not_match_is_not_trusted(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    root = tmp_path / "repo"
    rpms = tmp_path / "rpms"
    publish.publish([make_rpm(rpms, "app", requires=["libfoo < 2"]), make_rpm(rpms, "libfoo")], root, RELEASE, CHANNEL)
    assert _outcome(root, [make_rpm(rpms, "extra")])[2] == "fresh"
    damage(_cached(root))
    answer, upgraded, how = _outcome(root, [make_rpm(rpms, "libfoo", version="1.1")])
    assert (answer, how) == ("published", "fresh")
    assert upgraded == ["app-1.0-1.noarch", "extra-1.0-1.noarch", "libfoo-1.1-1.noarch"]
    assert not list((_cached(root).parent).glob(".old-*"))
    # The root that check recorded afresh is kept and used again.
    assert _outcome(root, [make_rpm(rpms, "libfoo", version="1.2")])[2] == "reused, 2 kept, 1 added"


def test_checks_left_before_they_finish_leave_no_process_and_no_directory(tmp_path: Path) -> None:
    """A publish that fails after starting its dnf checks (a bad signature, say) stops the helper."""
    asked = dnf.UpgradeRequest(live=(), others=(), packages=())
    install = dnf.InstallRequest((dnf.Repo("staged", tmp_path),), (), None)
    with dnf.PublishChecks(RELEASE, asked, install) as checks:
        pid, tmp = checks.pid, checks.tmp
        assert tmp.is_dir() and Path(f"/proc/{pid}").exists()
    assert not tmp.exists()
    assert not Path(f"/proc/{pid}").exists() or "dnf_publish_helper" not in Path(f"/proc/{pid}/cmdline").read_text()


def _cached_metadata(root: Path, rpms: list[Path]) -> tuple[list[str], list[str]]:
    """(upgraded set, live repos loaded from the kept solv cache) of one publish that must pass."""
    report = publish.publish(rpms, root, RELEASE, CHANNEL)
    (binary,) = [r for r in report.repos if r.path.name == "x86_64"]
    if binary.upgrade_cached:  # packages loaded from the cache name the live files: the difference reads them
        assert binary.upgrade_root.startswith("reused,") and not binary.upgrade_root.endswith(" 0 added")
    return binary.upgrade_checked, binary.upgrade_cached


def test_the_kept_metadata_cache_is_used_only_for_the_metadata_it_was_made_from(tmp_path: Path) -> None:
    """libsolv's cache of the staged metadata, kept with the root, loads the next check's live metadata."""
    root, rpms = tmp_path / "repo", tmp_path / "rpms"
    publish.publish([make_rpm(rpms, "app", requires=["libfoo < 2"]), make_rpm(rpms, "libfoo")], root, RELEASE, CHANNEL)
    # The first check has nothing kept; it keeps the staged metadata's cache under the live id.
    assert _cached_metadata(root, [make_rpm(rpms, "extra")])[1] == []
    kept = _cached(root) / "solv" / f"live-{CHANNEL}.solv"
    assert kept.is_file()
    # The next check's live metadata is that staged metadata: libdnf loads it from the cache.
    upgraded, cached = _cached_metadata(root, [make_rpm(rpms, "libfoo", version="1.1")])
    assert cached == [f"live-{CHANNEL}"]
    assert upgraded == ["app-1.0-1.noarch", "extra-1.0-1.noarch", "libfoo-1.1-1.noarch"]
    # A rollback serves other metadata than the cache was made from: libdnf parses the XML, same answer.
    history.rollback(root, RELEASE, CHANNEL)
    upgraded, cached = _cached_metadata(root, [make_rpm(rpms, "later")])
    assert (upgraded, cached) == (["app-1.0-1.noarch", "extra-1.0-1.noarch", "libfoo-1.0-1.noarch"], [])
    # A cache file libsolv cannot read is dropped and the XML parsed: the check still answers.
    data = kept.read_bytes()
    kept.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    upgraded, cached = _cached_metadata(root, [make_rpm(rpms, "libfoo", version="1.2")])
    assert cached == []
    assert upgraded == ["app-1.0-1.noarch", "extra-1.0-1.noarch", "later-1.0-1.noarch", "libfoo-1.2-1.noarch"]


_RECORD = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("upgrade_helper", sys.argv[1])
helper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helper)
root, steps = Path(sys.argv[2]), json.loads(sys.argv[3])
print(json.dumps([helper._record(root, erase, install) for erase, install in steps]))
"""


def test_recording_a_difference_is_one_rpm_transaction_that_refuses_what_rpm_refuses(tmp_path: Path) -> None:
    """The kept root's difference goes in through rpm's library; what `rpm -e`/`-i` would refuse is refused."""
    rpms = tmp_path / "rpms"
    app, app2 = make_rpm(rpms, "app"), make_rpm(rpms, "app", version="2.0")
    clash = make_rpm(rpms, "clash", files={"/usr/share/app/VERSION": "mine\n"})
    root = tmp_path / "root"
    root.mkdir()
    steps = [
        [[], [str(app)]],  # install
        [["app-1.0-1.noarch"], [str(app2)]],  # the difference of an upgrade, in one transaction
        [["gone-1.0-1.noarch"], []],  # erase what is not installed: refused
        [[], [str(clash)]],  # a file another installed package owns: refused
    ]
    python = dnf._system_python(shutil.which("dnf") or "dnf")
    helper = Path(dnf.__file__).with_name("dnf_upgrade_helper.py")
    done = subprocess.run(
        [python, "-I", "-c", _RECORD, str(helper), str(root), json.dumps(steps)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout.splitlines()[-1]) == [True, True, False, False]
    listed = subprocess.run(["rpm", "--root", str(root), "-qa"], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == ["app-2.0-1.noarch"]


def test_the_install_check_loads_the_other_live_channels_from_the_kept_cache(tmp_path: Path) -> None:
    """Publishing to testing over a live base: dnf's install check reads base from the cache the upgrade check kept."""
    root, rpms = tmp_path / "repo", tmp_path / "rpms"
    publish.publish([make_rpm(rpms, "libfoo")], root, RELEASE, "base")

    def install_cached(name: str, version: str = "1.0") -> list[str]:
        report = publish.publish([make_rpm(rpms, name, version, requires=["libfoo"])], root, RELEASE, CHANNEL)
        (binary,) = [r for r in report.repos if r.path.name == "x86_64"]
        assert binary.dnf_installed == sorted([f"{name}-{version}-1.noarch", "libfoo-1.0-1.noarch"])  # from base
        return binary.install_cached

    assert install_cached("app") == []  # nothing live in testing yet: no upgrade check, nothing kept
    assert install_cached("tool") == []  # the first upgrade check keeps base's cache with its root
    kept = _cached(root) / "solv" / "live-base.solv"
    assert kept.is_file()
    assert install_cached("more") == ["live-base"]
    # A kept file libsolv cannot read: the install check drops it, parses base's XML, and still answers.
    data = kept.read_bytes()
    kept.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    assert install_cached("last") == []
