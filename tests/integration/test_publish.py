"""Publishing with the real tools: rpmbuild-made RPMs, gpg keys, rpmsign, createrepo_c and dnf."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.fixtures.repotree import Arg, cli, snapshot, start, wait_stopped
from tests.fixtures.rpms import make_rpm, make_srpm
from xcpbuild.adapters import createrepo, dnf, gpg, rpmsig, rpmsign
from xcpbuild.errors import PublishError, RpmError, SigningError, UsageError, VerifyError, XcpbuildError
from xcpbuild.pipeline.publish import history, publish
from xcpbuild.pipeline.publish import repo as repolib

RELEASE = "8.3"


@pytest.fixture(scope="module")
def tools() -> None:
    need_tool("rpmbuild", "rpmsign", "rpmkeys", "gpg", "gpgv", "dnf")


@pytest.fixture(scope="module")
def key(tools: None, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    made = make_key(tmp_path_factory.mktemp("key"))
    yield made
    stop_agent(made)


@pytest.fixture(scope="module")
def other_key(tools: None, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    made = make_key(tmp_path_factory.mktemp("otherkey"), uid="someone else <other@example.invalid>")
    yield made
    stop_agent(made)


@pytest.fixture(scope="module")
def rpms(tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("rpms")
    return {
        "hello-1.0": make_rpm(d, "hello", "1.0", "1"),
        "hello-1.1": make_rpm(d, "hello", "1.1", "1"),
        "hello-src-1.0": make_srpm(d, "hello", "1.0", "1"),
        "world-1.0": make_rpm(d, "world", "1.0", "1", requires=["hello"]),
        "lonely-1.0": make_rpm(d, "lonely", "1.0", "1"),
    }


def live(root: Path, channel: str = "testing") -> repolib.RepoDir:
    return repolib.repo_dirs(root, RELEASE, channel)[0]


def install_live(root: Path, key: GpgTestKey, *names: str, channel: str = "testing") -> list[str]:
    result = dnf.install([dnf.Repo("live", live(root, channel).path)], list(names), key.public_key, RELEASE)
    return result.installed


def test_publish_signs_and_dnf_installs_with_gpgcheck(tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]) -> None:
    root = tmp_path / "repo"
    report = publish.publish([rpms["hello-1.0"], rpms["hello-src-1.0"]], root, RELEASE, "testing", key=key)
    assert [r.added for r in report.repos] == [["hello-1.0-1.noarch"], ["hello-1.0-1.src"]]
    binary = root / "8/8.3/testing/x86_64"
    assert (binary / "Packages/hello-1.0-1.noarch.rpm").is_file()
    assert (root / "8/8.3/testing/Source/SPackages/hello-1.0-1.src.rpm").is_file()
    assert (binary / "repodata").is_symlink()
    # EL7-readable metadata: gz XML, nothing zstd.
    entries = createrepo.read_repomd(binary / "repodata")
    assert {e.type for e in entries} == {"primary", "filelists", "other"}
    assert all(e.href.endswith(".xml.gz") for e in entries)
    # The published RPM carries our signature; the repomd signature verifies with our key only.
    assert rpmsign.check([binary / "Packages/hello-1.0-1.noarch.rpm"], key.public_key, key.fingerprint[-8:]) == []
    signer = gpg.verify_detached(key.public_key, binary / "repodata/repomd.xml", binary / "repodata/repomd.xml.asc")
    assert signer == key.fingerprint
    # The input file was not modified (a signed copy was published).
    assert rpmsign.check([rpms["hello-1.0"]], key.public_key, key.fingerprint[-8:])
    # A real client with gpgcheck and repo_gpgcheck installs it.
    assert install_live(root, key, "hello") == ["hello-1.0-1.noarch"]


def test_dnf_refuses_repo_with_a_foreign_key(
    tmp_path: Path, key: GpgTestKey, other_key: GpgTestKey, rpms: dict[str, Path]
) -> None:
    """Guards the check itself: a client trusting another key must fail, or the dnf check proves nothing."""
    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "testing", key=key)
    with pytest.raises(Exception, match="dnf could not install"):
        dnf.install([dnf.Repo("live", live(root).path)], ["hello"], other_key.public_key, RELEASE)


def test_detached_signatures_verify_with_the_signing_key_alone(
    tmp_path: Path, key: GpgTestKey, other_key: GpgTestKey
) -> None:
    """gpgv against a keyring of the one public key: another key's signature and a changed file are refused."""
    data = tmp_path / "repomd.xml"
    data.write_text("<repomd/>\n")
    signature = gpg.detach_sign(key, data, tmp_path / "repomd.xml.asc")
    assert gpg.verify_detached(key.public_key, data, signature) == key.fingerprint
    foreign = gpg.detach_sign(other_key, data, tmp_path / "foreign.asc")
    with pytest.raises(SigningError, match="does not verify"):
        gpg.verify_detached(key.public_key, data, foreign)
    binary_key = tmp_path / "key.gpg"  # a public key given unarmoured works the same
    binary_key.write_bytes(subprocess.run(
        ["gpg", "--dearmor"], input=key.public_key.read_bytes(), capture_output=True, check=True
    ).stdout)  # fmt: skip
    assert gpg.verify_detached(binary_key, data, signature) == key.fingerprint
    data.write_text("<repomd>changed</repomd>\n")
    with pytest.raises(SigningError, match="does not verify"):
        gpg.verify_detached(key.public_key, data, signature)


def test_republish_is_noop_and_changed_content_is_refused(
    tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]
) -> None:
    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "testing", key=key)
    before = snapshot(root)
    again = publish.publish([rpms["hello-1.0"]], root, RELEASE, "testing", key=key)
    assert not again.changed and again.repos[0].unchanged == ["hello-1.0-1.noarch"]
    assert snapshot(root) == before
    impostor = make_rpm(tmp_path / "impostor", "hello", "1.0", "1", files={"/usr/share/hello/VERSION": "evil\n"})
    with pytest.raises(PublishError, match=r"already published .* with different content"):
        publish.publish([impostor], root, RELEASE, "testing", key=key)
    assert snapshot(root) == before


def test_second_publish_reuses_metadata_and_keeps_previous_files(
    tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]
) -> None:
    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "testing", key=key)
    old_names = [Path(e.href).name for e in createrepo.read_repomd(live(root).repodata)]
    report = publish.publish([rpms["world-1.0"]], root, RELEASE, "testing", key=key)
    assert (report.repos[0].packages_read, report.repos[0].packages_reused) == (1, 1)
    # A client holding the previous repomd.xml still finds every file it names.
    for name in old_names:
        assert (live(root).repodata / name).is_file()
    assert createrepo.check_repo(live(root).path) == []
    assert install_live(root, key, "world") == ["hello-1.0-1.noarch", "world-1.0-1.noarch"]


def test_tampered_rpm_is_caught_and_live_repo_untouched(tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]) -> None:
    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "testing", key=key)
    before = snapshot(root)
    tampered = tmp_path / "lonely-1.0-1.noarch.rpm"
    data = bytearray(rpms["lonely-1.0"].read_bytes())
    data[-40] ^= 0xFF  # inside the compressed payload: the header still parses
    tampered.write_bytes(bytes(data))
    with pytest.raises(SigningError):
        publish.publish([tampered], root, RELEASE, "testing", key=key)
    assert snapshot(root) == before
    assert install_live(root, key, "hello") == ["hello-1.0-1.noarch"]


def test_stale_signature_swapped_in_mid_publish_is_caught(
    tmp_path: Path, key: GpgTestKey, other_key: GpgTestKey, rpms: dict[str, Path]
) -> None:
    """Freeze the publisher right after signing, put back a copy signed by an old key, resume."""
    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "testing", key=key)
    before = snapshot(root)
    stale = tmp_path / "stale.rpm"
    shutil.copyfile(rpms["lonely-1.0"], stale)
    rpmsign.sign([stale], other_key)
    args: list[Arg] = [
        "publish",
        rpms["lonely-1.0"],
        "--repo",
        root,
        "--release",
        RELEASE,
        "--channel",
        "testing",
        "--sign-key",
        key.fingerprint,
        "--gnupg-home",
        key.home,
    ]
    proc = start(args, "signed")
    assert wait_stopped(proc)
    staged = list(live(root).path.glob(".staging-*/incoming/lonely-1.0-1.noarch.rpm"))
    assert len(staged) == 1
    shutil.copyfile(stale, staged[0])
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == SigningError.exit_code, err
    assert "no header signature by key" in err or "NOT OK" in err or "NOKEY" in err
    assert snapshot(root) == before


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("xcpbuild: error:")]
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return errors[0]


def test_bad_inputs_give_one_clear_line_and_leave_repo_unchanged(
    tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]
) -> None:
    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "testing", key=key)
    before = snapshot(root)
    text = tmp_path / "notes.rpm"
    text.write_text("this is not an rpm\n")
    truncated = tmp_path / "truncated.rpm"
    truncated.write_bytes(rpms["lonely-1.0"].read_bytes()[:300])
    common: list[Arg] = ["--repo", root, "--release", RELEASE, "--sign-key", key.fingerprint, "--gnupg-home", key.home]
    cases: list[tuple[list[Arg], type[XcpbuildError], str]] = [
        (["publish", text, *common, "--channel", "testing"], RpmError, "notes.rpm"),
        (["publish", truncated, *common, "--channel", "testing"], RpmError, "truncated.rpm"),
        (["publish", tmp_path / "missing.rpm", *common, "--channel", "testing"], RpmError, "missing.rpm"),
        (["publish", rpms["lonely-1.0"], *common, "--channel", "nightly"], UsageError, "unknown channel 'nightly'"),
        (
            [
                "publish",
                rpms["lonely-1.0"],
                *common[:4],
                "--sign-key",
                "DEADBEEFDEADBEEF",
                "--gnupg-home",
                key.home,
                "--channel",
                "testing",
            ],
            SigningError,
            "no secret key",
        ),
        (
            ["publish", rpms["lonely-1.0"], "--repo", root, "--release", "8", "--channel", "testing"],
            UsageError,
            "not of the form X.Y",
        ),
    ]
    for argv, error, words in cases:
        done = cli(argv)
        assert done.returncode == error.exit_code, (argv, done.stderr)
        assert words in _one_error_line(done)
        assert snapshot(root) == before, argv


def test_concurrent_publishes_serialise_and_both_land(tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]) -> None:
    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "testing", key=key)
    common: list[Arg] = [
        "--repo",
        root,
        "--release",
        RELEASE,
        "--channel",
        "testing",
        "--sign-key",
        key.fingerprint,
        "--gnupg-home",
        key.home,
    ]
    # Hold the first publisher right after it takes the lock, so the second surely waits on it.
    first = start(["publish", rpms["lonely-1.0"], *common], "locked")
    assert wait_stopped(first)
    second = start(["publish", rpms["hello-1.1"], *common], "never")
    try:
        second.wait(timeout=1.5)
        raise AssertionError("the second publisher did not wait for the lock")
    except subprocess.TimeoutExpired:
        pass
    os.kill(first.pid, signal.SIGCONT)
    for proc in (first, second):
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    generation = repolib.current_generation(live(root))
    assert generation is not None and generation.number == 3
    names = sorted(Path(h).name for h in generation.hrefs())
    assert names == ["hello-1.0-1.noarch.rpm", "hello-1.1-1.noarch.rpm", "lonely-1.0-1.noarch.rpm"]
    # Serialised in lock order: the first publisher's generation does not yet hold the second's package.
    middle = sorted(Path(h).name for h in repolib.load_generation(live(root), 2).hrefs())
    assert middle == ["hello-1.0-1.noarch.rpm", "lonely-1.0-1.noarch.rpm"]
    assert install_live(root, key, "lonely", "hello") == ["hello-1.1-1.noarch", "lonely-1.0-1.noarch"]


def test_promote_rollback_and_diff_through_the_cli(tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]) -> None:
    root = tmp_path / "repo"
    keyargs: list[Arg] = ["--sign-key", key.fingerprint, "--gnupg-home", key.home]
    repo: list[Arg] = ["--repo", root, "--release", RELEASE]
    for rpm in (rpms["hello-1.0"], rpms["hello-1.1"]):
        done = cli(["publish", rpm, *repo, "--channel", "testing", *keyargs, "--json"])
        assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["repos"][0]["added"] == ["hello-1.1-1.noarch"]

    diff = cli(["repo", "diff", *repo, "--channel", "testing", "--json"])
    assert diff.returncode == 0, diff.stderr
    assert json.loads(diff.stdout)["changes"] == [
        {"change": "upgraded", "name": "hello", "arch": "noarch", "old": "1.0-1", "new": "1.1-1"}
    ]

    done = cli(["promote", "hello", *repo, "--from", "testing", "--to", "updates", *keyargs])
    assert done.returncode == 0, done.stderr
    assert install_live(root, key, "hello", channel="updates") == ["hello-1.1-1.noarch"]
    missing = cli(["promote", "nosuch", *repo, "--from", "testing", "--to", "updates", *keyargs])
    assert missing.returncode == PublishError.exit_code
    assert "nosuch" in _one_error_line(missing)

    done = cli(["rollback", *repo, "--channel", "testing"])
    assert done.returncode == 0, done.stderr
    assert "downgraded" in done.stdout
    # dnf picks the newest available: after the rollback that is 1.0 again.
    assert install_live(root, key, "hello") == ["hello-1.0-1.noarch"]
    assert createrepo.check_repo(live(root).path) == []
    report = history.diff(root, RELEASE, "testing")
    assert [c.change for c in report.changes] == ["added"]


def test_base_is_frozen_once_published(tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]) -> None:
    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "base", key=key)
    with pytest.raises(PublishError, match="frozen"):
        publish.publish([rpms["lonely-1.0"]], root, RELEASE, "base", key=key)
    report = publish.publish([rpms["lonely-1.0"]], root, RELEASE, "base", key=key, unfreeze_base=True)
    assert report.changed


def test_dnf_check_resolves_dependencies_from_base(tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]) -> None:
    """`world` requires `hello`, which lives only in base: the staged check must still pass."""
    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "base", key=key)
    report = publish.publish([rpms["world-1.0"]], root, RELEASE, "updates", key=key)
    assert report.repos[0].dnf_installed == ["hello-1.0-1.noarch", "world-1.0-1.noarch"]


def test_unsigned_publish_for_lab_use(tmp_path: Path, rpms: dict[str, Path]) -> None:
    root = tmp_path / "repo"
    report = publish.publish([rpms["hello-1.0"]], root, RELEASE, "lab")
    assert report.signed_by is None and report.changed
    assert not (live(root, "lab").repodata / "repomd.xml.asc").exists()
    result = dnf.install([dnf.Repo("lab", live(root, "lab").path)], ["hello"], None, RELEASE)
    assert result.installed == ["hello-1.0-1.noarch"]


def test_crash_point_hook_is_inert_without_the_variable(tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]) -> None:
    root = tmp_path / "repo"
    proc = start(["publish", rpms["hello-1.0"], "--repo", root, "--release", RELEASE, "--channel", "lab"], "")
    assert not wait_stopped(proc)
    assert proc.returncode == 0


def test_failed_dnf_check_leaves_live_repo_untouched(tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]) -> None:
    """`world` needs `hello`, which no channel has: dnf refuses, and nothing placed may remain."""
    root = tmp_path / "repo"
    publish.publish([rpms["lonely-1.0"]], root, RELEASE, "testing", key=key)
    before = snapshot(root)
    with pytest.raises(VerifyError, match="dnf could not install world"):
        publish.publish([rpms["world-1.0"]], root, RELEASE, "testing", key=key)
    assert snapshot(root) == before


def test_rollback_twice_goes_two_publishes_back(tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]) -> None:
    root = tmp_path / "repo"
    for rpm in (rpms["hello-1.0"], rpms["lonely-1.0"], rpms["hello-1.1"]):
        publish.publish([rpm], root, RELEASE, "testing", key=key)
    first = history.rollback(root, RELEASE, "testing")
    assert (first.from_generation, first.to_generation) == (3, 2)
    assert [(c.change, c.name) for c in first.changes] == [("downgraded", "hello")]
    second = history.rollback(root, RELEASE, "testing")
    assert second.to_generation == 1
    assert [(c.change, c.name) for c in second.changes] == [("removed", "lonely")]
    assert install_live(root, key, "hello") == ["hello-1.0-1.noarch"]
    with pytest.raises(PublishError, match="no previous generation"):
        history.rollback(root, RELEASE, "testing")
    # The repomd.xml served after a rollback is the old one, still correctly signed.
    binary = live(root)
    gpg.verify_detached(key.public_key, binary.repodata / "repomd.xml", binary.repodata / "repomd.xml.asc")


def test_promote_refuses_a_package_signed_by_another_key(
    tmp_path: Path, key: GpgTestKey, other_key: GpgTestKey, rpms: dict[str, Path]
) -> None:
    root = tmp_path / "repo"
    publish.publish([rpms["lonely-1.0"]], root, RELEASE, "testing", key=other_key)
    with pytest.raises(SigningError, match=r"lonely-1\.0-1\.noarch\.rpm"):
        publish.promote(root, RELEASE, "testing", "updates", ["lonely"], key=key)
    assert not repolib.repo_dirs(root, RELEASE, "updates")[0].repodata.exists()


def test_sqlite_databases_on_request_and_kept(tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]) -> None:
    """yum's sqlite databases (schema 10, tied to their XML) are opt-in, then kept on later publishes."""
    import bz2
    import sqlite3

    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "testing", key=key, sqlite=True)
    publish.publish([rpms["lonely-1.0"]], root, RELEASE, "testing", key=key)
    binary = live(root)
    entries = {e.type: e for e in createrepo.read_repomd(binary.repodata)}
    assert set(entries) == {"primary", "filelists", "other", "primary_db", "filelists_db", "other_db"}
    assert (binary.repodata / "repomd.xml").read_text().count("<database_version>10</database_version>") == 3
    database = tmp_path / "primary.sqlite"
    database.write_bytes(bz2.decompress((binary.path / entries["primary_db"].href).read_bytes()))
    with sqlite3.connect(database) as con:
        assert sorted(con.execute("select name from packages")) == [("hello",), ("lonely",)]
        assert con.execute("select checksum from db_info").fetchone()[0] == entries["primary"].checksum
    assert createrepo.check_repo(binary.path) == []
    assert install_live(root, key, "lonely") == ["lonely-1.0-1.noarch"]


def test_publish_signs_through_agent_sessions_and_dnf_checks_them(
    tmp_path: Path, key: GpgTestKey, other_key: GpgTestKey, rpms: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The agent-session signer (no rpmsign) makes what dnf installs with gpgcheck; signed inputs are re-signed."""
    resigned = tmp_path / "in" / rpms["world-1.0"].name
    resigned.parent.mkdir()
    shutil.copyfile(rpms["world-1.0"], resigned)
    rpmsign.sign([resigned], other_key)  # signed by someone else before: publish replaces that signature
    root = tmp_path / "repo"
    with caplog.at_level(logging.INFO, logger="xcpbuild"):
        publish.publish([rpms["hello-1.0"], resigned], root, RELEASE, "testing", key=key)
    assert "with rpmsign" not in caplog.text
    packages = [live(root).packages_dir / name for name in ("hello-1.0-1.noarch.rpm", "world-1.0-1.noarch.rpm")]
    assert rpmsign.check(packages, key.public_key, key.short_id) == []
    assert [p.stat().st_size for p in packages] == [rpms["hello-1.0"].stat().st_size, resigned.stat().st_size]
    assert sorted(install_live(root, key, "world")) == ["hello-1.0-1.noarch", "world-1.0-1.noarch"]
    # Built by rpm 4.18 (a payload digest): the header signature alone, as rpmsign writes without --rpmv3.
    assert [signature_tags(p) for p in packages] == [{rpmsig.RSAHEADER}] * 2


def signature_tags(path: Path) -> set[int]:
    with open(path, "rb") as src:
        entries = rpmsig.read_package(src, path).signature.entries
    return {e.tag for e in entries} & {rpmsig.RSAHEADER, rpmsig.SIG_PGP}


def test_rpmv3_adds_the_header_payload_signature_everywhere(
    tmp_path: Path, key: GpgTestKey, rpms: dict[str, Path]
) -> None:
    root = tmp_path / "repo"
    publish.publish([rpms["hello-1.0"]], root, RELEASE, "testing", key=key, rpmv3=True)
    placed = live(root).packages_dir / "hello-1.0-1.noarch.rpm"
    assert signature_tags(placed) == {rpmsig.RSAHEADER, rpmsig.SIG_PGP}
    assert rpmsign.check([placed], key.public_key, key.short_id) == []
    # Asking for it without a key is a usage mistake, said before anything happens.
    done = cli(["publish", rpms["hello-1.0"], "--repo", tmp_path / "unsigned", "--release", RELEASE,
                "--channel", "lab", "--rpmv3"])  # fmt: skip
    assert done.returncode == UsageError.exit_code
    assert "--rpmv3 chooses which signatures to write: it needs --sign-key" in done.stderr
    assert not (tmp_path / "unsigned").exists()


def test_one_filesystem_sync_before_the_swap_replaces_an_fsync_per_package(
    tmp_path: Path, rpms: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Placed packages, metadata and the generation are made durable together, before anything names them."""
    events: list[str] = []
    real_fsync, real_sync, real_swap = os.fsync, repolib.sync_filesystem, repolib.swap

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def sync_filesystem(path: Path) -> None:
        events.append(f"syncfs {path.name}")
        real_sync(path)

    def swap(repo: repolib.RepoDir, number: int) -> None:
        events.append("swap")
        real_swap(repo, number)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(repolib, "sync_filesystem", sync_filesystem)
    monkeypatch.setattr(repolib, "swap", swap)
    three = [rpms["hello-1.0"], rpms["world-1.0"], rpms["lonely-1.0"]]
    publish.publish(three, tmp_path / "repo", RELEASE, "lab", dnf_check=False)
    assert events.count("syncfs x86_64") == 1 and events.index("syncfs x86_64") < events.index("swap")
    # The swapped symlink's directory alone: not one per package or file, nor for generation.json.
    assert events.count("fsync") == 1, events
    assert createrepo.check_repo(live(tmp_path / "repo", "lab").path) == []
