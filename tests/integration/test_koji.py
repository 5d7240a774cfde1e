"""xcpbuild against a real koji hub on this machine (PostgreSQL + the hub's WSGI app + its files).

Opt-in: XCPBUILD_KOJI_SOURCE names a koji source checkout (github.com/koji-project/koji); the
hub's code is read from there and never copied here. Without it these tests skip, in CI too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.fixtures.rpms import make_rpm, make_srpm
from tests.integration.koji_hub import KojiHub, missing_prerequisites
from xcpbuild.adapters import dnf, gpg
from xcpbuild.adapters import koji as kojilib
from xcpbuild.cli.app import main
from xcpbuild.errors import KojiError, UsageError
from xcpbuild.pipeline.koji import channel, importer, submit, tags
from xcpbuild.pipeline.publish import publish
from xcpbuild.pipeline.publish import repo as repolib

RELEASE = "8.3"
SOURCE = os.environ.get("XCPBUILD_KOJI_SOURCE")

pytestmark = [
    pytest.mark.optin,
    pytest.mark.skipif(not SOURCE, reason="XCPBUILD_KOJI_SOURCE (a koji source checkout) is not set"),
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    need_tool("rpmbuild", "rpmsign", "gpg", "dnf")
    source = Path(str(SOURCE))
    why = missing_prerequisites(source)
    if why:
        pytest.fail(f"XCPBUILD_KOJI_SOURCE is set but the hub cannot run: needs {why}", pytrace=False)
    running = KojiHub(source, tmp_path_factory.mktemp("kojihub"), release=RELEASE).start()
    session = running.session()
    session.grantCGAccess("kojiadmin", importer.CONTENT_GENERATOR, create=True)
    session.logout()
    running.add_packages(["hello", "world", "lonely"])
    yield running
    running.stop()


@pytest.fixture(scope="module")
def profile(hub: KojiHub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hub.write_profile(tmp_path_factory.mktemp("kojiconf"))


@pytest.fixture(scope="module")
def koji_hub(profile: Path) -> Iterator[kojilib.Hub]:
    connected = kojilib.connect(kojilib.load_profile("fixture", profile))
    yield connected
    connected.close()


@pytest.fixture(scope="module")
def key(hub: KojiHub, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    made = make_key(tmp_path_factory.mktemp("key"))
    yield made
    stop_agent(made)


@pytest.fixture(scope="module")
def signing(key: GpgTestKey) -> Iterator[gpg.SigningKey]:
    with publish.signing_key(key.fingerprint, key.home) as resolved:
        assert resolved is not None
        yield resolved


def local_build(base: Path, name: str, version: str, release: str = "1", requires: tuple[str, ...] = ()) -> Path:
    """A build folder shaped like xcpbuild's: the SRPM, the RPMs, build.log and a build record."""
    folder = base / f"{name}-{version}-{release}"
    folder.mkdir(parents=True)
    scratch = base / f".work-{name}-{version}-{release}"
    shutil.copy(make_srpm(scratch, name, version, release), folder)
    shutil.copy(make_rpm(scratch, name, version, release, requires=requires), folder)
    (folder / "build.log").write_text(f"+ rpmbuild -ba {name}.spec\nbuilt {name}-{version}-{release}\n")
    (folder / "build-record.json").write_text(json.dumps({"status": "ok", "package": name, "key": "k"}))
    return folder


def run_cli(profile: Path, *argv: str) -> int:
    return main([*argv[:2], *argv[2:], "--profile", "fixture", "--koji-config", str(profile)])


def test_import_tag_promote_publish_and_dnf_install(
    hub: KojiHub,
    koji_hub: kojilib.Hub,
    profile: Path,
    signing: gpg.SigningKey,
    key: GpgTestKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hello = local_build(tmp_path / "builds", "hello", "1.0")
    world = local_build(tmp_path / "builds", "world", "1.0", requires=("hello",))
    incoming = hub.tag_name("incoming")

    # Import through the CLI: one koji build with SRPM, RPM and log, tagged into incoming.
    assert run_cli(profile, "koji", "import", str(hello), "--tag", incoming) == 0
    assert "imported as build" in capsys.readouterr().out
    build = koji_hub.call("getBuild", "hello-1.0-1")
    assert kojilib.BUILD_STATES[build["state"]] == "COMPLETE"
    assert sorted(r["arch"] for r in koji_hub.call("listRPMs", buildID=build["id"])) == ["noarch", "src"]
    logs = koji_hub.call("getBuildLogs", build["id"])
    assert "build.log" in [entry["name"] for entry in logs]
    assert [t["name"] for t in koji_hub.call("listTags", build="hello-1.0-1")] == [incoming]

    # Importing the same files again changes nothing; other content under the same NVR is refused.
    again = importer.import_build(koji_hub, [hello], incoming)
    assert (again.imported, again.already_tagged, again.build_id) == (False, True, build["id"])
    impostor = local_build(tmp_path / "impostor", "hello", "1.0")
    (impostor / "hello-1.0-1.src.rpm").write_bytes((impostor / "hello-1.0-1.src.rpm").read_bytes() + b"x" * 10)
    with pytest.raises(KojiError, match="other content"):
        importer.import_build(koji_hub, [impostor], incoming)
    importer.import_build(koji_hub, [world], incoming)

    # Promotion: one step at a time; a skip is refused unless asked for.
    with pytest.raises(UsageError, match="skips"):
        tags.promote(koji_hub, "hello-1.0-1", RELEASE, to_step="testing")
    first = tags.promote(koji_hub, "hello-1.0-1", RELEASE)
    assert (first.from_tag, first.to_tag) == (incoming, hub.tag_name("ci"))
    assert [t["name"] for t in koji_hub.call("listTags", build="hello-1.0-1")] == [hub.tag_name("ci")]
    assert run_cli(profile, "koji", "promote", "hello-1.0-1", "--release", RELEASE, "--to", "ci") == 2
    assert "not after" in capsys.readouterr().err
    assert run_cli(profile, "koji", "promote", "world-1.0-1", "--release", RELEASE) == 0
    assert "v8.3-ci" in capsys.readouterr().out
    step = tags.promote(koji_hub, "world-1.0-1", RELEASE, to_step="testing")
    assert step.to_tag == hub.tag_name("testing") and step.skipped == []
    tags.promote(koji_hub, "hello-1.0-1", RELEASE)
    testing = hub.tag_name("testing")
    assert {b["nvr"] for b in koji_hub.call("listTagged", testing)} == {"hello-1.0-1", "world-1.0-1"}

    # repo diff against the tag before publishing: everything would be added.
    root = tmp_path / "repo"
    before = channel.diff_tag(koji_hub, testing, root, RELEASE, "testing")
    assert {(c.change, c.name, c.arch) for c in before.changes} == {
        ("added", "hello", "noarch"),
        ("added", "hello", "src"),
        ("added", "world", "noarch"),
        ("added", "world", "src"),
    }

    # Publish the channel from the tag (signed, dnf-checked, atomic), then dnf installs from it.
    cache = tmp_path / "cache"
    report = channel.publish_tag(
        koji_hub,
        testing,
        root,
        RELEASE,
        "testing",
        cache_dir=cache,
        key=signing,
    )
    assert (report.builds, report.rpms, report.downloaded) == (2, 4, 4)
    assert report.publish is not None and report.publish.changed
    installed = dnf.install(
        [dnf.Repo("live", repolib.repo_dirs(root, RELEASE, "testing")[0].path)], ["world"], key.public_key, RELEASE
    ).installed
    assert any(n.startswith("world-1.0-1") for n in installed) and any(n.startswith("hello-1.0-1") for n in installed)
    assert channel.diff_tag(koji_hub, testing, root, RELEASE, "testing").changes == []

    # Nothing new: nothing downloaded, nothing published.
    again_report = channel.publish_tag(
        koji_hub,
        testing,
        root,
        RELEASE,
        "testing",
        cache_dir=cache,
        key=signing,
    )
    assert again_report.publish is None and again_report.downloaded == 0

    # A newer build in the tag: only its files are downloaded; the rest come from the cache.
    hello2 = local_build(tmp_path / "builds", "hello", "1.1")
    importer.import_build(koji_hub, [hello2], incoming)
    for _ in range(2):
        tags.promote(koji_hub, "hello-1.1-1", RELEASE)
    shown = run_cli(
        profile,
        "repo",
        "diff",
        "--repo",
        str(root),
        "--release",
        RELEASE,
        "--channel",
        "testing",
        "--koji-tag",
        testing,
    )
    assert shown == 0 and "upgraded" in capsys.readouterr().out
    third = channel.publish_tag(
        koji_hub,
        testing,
        root,
        RELEASE,
        "testing",
        cache_dir=cache,
        key=signing,
    )
    assert (third.downloaded, third.reused) == (2, 2)
    assert third.publish is not None
    assert sorted(n for r in third.publish.repos for n in r.added) == ["hello-1.1-1.noarch", "hello-1.1-1.src"]


def test_a_failed_publish_from_a_tag_changes_nothing(
    hub: KojiHub, koji_hub: kojilib.Hub, signing: gpg.SigningKey, tmp_path: Path
) -> None:
    lonely = local_build(tmp_path / "builds", "lonely", "1.0", requires=("not-anywhere",))
    importer.import_build(koji_hub, [lonely], hub.tag_name("incoming"))
    root = tmp_path / "repo"
    with pytest.raises(Exception, match=r"not-anywhere|nothing was published|dnf"):
        channel.publish_tag(
            koji_hub,
            hub.tag_name("incoming"),
            root,
            RELEASE,
            "incoming",
            cache_dir=tmp_path / "c",
            key=signing,
        )
    binary, source = repolib.repo_dirs(root, RELEASE, "incoming")
    assert repolib.current_number(binary) is None and repolib.current_number(source) is None


def test_submit_creates_a_build_task_and_watching_reports_it_queued(
    hub: KojiHub, koji_hub: kojilib.Hub, profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # From a package repository checkout: its HEAD commit, origin URL; a dirty tree is refused.
    checkout = tmp_path / "pkg"
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    (checkout / "SPECS").mkdir()
    (checkout / "SPECS" / "hello.spec").write_text("Name: hello\n")
    git = ["git", "-C", str(checkout), "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "spec"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://git.example.invalid/xcp-ng-rpms/hello"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    source = submit.checkout_source(checkout)
    assert source.scm == f"git+https://git.example.invalid/xcp-ng-rpms/hello?#{sha}"
    (checkout / "SPECS" / "hello.spec").write_text("Name: hello\nVersion: 2\n")
    assert run_cli(profile, "koji", "build", "--checkout", str(checkout), "--target", "v8.3-incoming") == 8
    assert "uncommitted changes" in capsys.readouterr().err

    task_id = submit.create_task(koji_hub, source, hub.tag_name("incoming"), scratch=True)
    info = koji_hub.call("getTaskInfo", task_id, request=True)
    assert info["method"] == "build"
    assert info["request"][0] == source.scm and info["request"][1] == "v8.3-incoming"
    assert info["request"][2] == {"scratch": True}
    assert kojilib.TASK_STATES[info["state"]] == "FREE"

    # Watching it: no builder here, so it stays queued, and the watch says so when its time runs out.
    code = run_cli(profile, "koji", "watch", str(task_id), "--interval", "0.2", "--watch-timeout", "1")
    captured = capsys.readouterr()
    assert code == 7
    assert "queued" in captured.err and "no builder has taken it" in captured.err
    assert f"{task_id}  build" in captured.err

    # An SRPM upload: the file lands in the hub's work dir and the task names it.
    srpm = make_srpm(tmp_path / "srpm", "hello", "2.0", "1")
    assert run_cli(profile, "koji", "build", "--srpm", str(srpm), "--target", "v8.3-incoming", "--nowait") == 0
    out = capsys.readouterr().out
    new_task = int(out.split("koji task ")[1].split()[0])
    request = koji_hub.call("getTaskInfo", new_task, request=True)["request"]
    assert request[0].startswith("xcpbuild-build/") and request[0].endswith("/hello-2.0-1.src.rpm")
    assert (hub.topdir / "work" / request[0]).stat().st_size == srpm.stat().st_size

    # Unknown target: one line and the targets there are.
    assert run_cli(profile, "koji", "build", "--scm", source.scm or "", "--target", "v9.9-nope") == KojiError.exit_code
    assert "v8.3-incoming" in capsys.readouterr().err


def test_profile_errors_are_one_line_with_a_hint(
    profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["koji", "promote", "x-1-1", "--release", "8.3", "--profile", "nope", "--koji-config", str(profile)]) == 3
    )
    assert "koji profile 'nope'" in capsys.readouterr().err
    # A hub that is not there: koji's error becomes one line, no traceback, no password shown.
    dead = tmp_path / "dead.conf"
    dead.write_text(
        "[dead]\nserver = http://127.0.0.1:9/kojihub\nauthtype = password\nuser = u\n"
        "password = s3cret-not-shown\nmax_retries = 1\nretry_interval = 0\n"
    )
    assert (
        main(["koji", "promote", "x-1-1", "--release", "8.3", "--profile", "dead", "--koji-config", str(dead)])
        == KojiError.exit_code
    )
    err = capsys.readouterr().err
    assert "cannot reach the koji hub" in err and "s3cret" not in err and "Traceback" not in err
    # A wrong password.
    bad = tmp_path / "bad.conf"
    bad.write_text(profile.read_text().replace("[fixture]", "[bad]").replace("hub-fixture-password", "wrong"))
    assert (
        main(["koji", "promote", "x-1-1", "--release", "8.3", "--profile", "bad", "--koji-config", str(bad)])
        == KojiError.exit_code
    )
    assert "refused the login" in capsys.readouterr().err
