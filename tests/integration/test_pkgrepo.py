"""Package repositories (xcp-ng-rpms layout) built, checked and patched as they are, with the real tools.

Fixture repositories are made by ``tests/fixtures/pkgrepo.py`` from the fixture
upstream. Bad input is refused with one line and a hint before the engine is
asked (DOCKER_HOST points nowhere), so nothing is built and no container is left.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_tool
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.fixtures.pkgrepo import BROKEN, EXTRAS, FIX, TARBALL, lfs_pointer, make_pkgrepo, spec_text, tarball_bytes
from tests.fixtures.upstream import Upstream, make_upstream
from tests.integration.build_fixtures import build_package
from xcpbuild.adapters import container as ctr
from xcpbuild.adapters import dnf, rpmheader
from xcpbuild.cli.app import main
from xcpbuild.config import Settings
from xcpbuild.errors import PatchError, SourceError, UsageError
from xcpbuild.pipeline.build import record as records
from xcpbuild.pipeline.publish import publish
from xcpbuild.pipeline.sources import patch
from xcpbuild.pipeline.sources.package import RepoPackage, resolve


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    need_tool("rpmspec", "git")
    return make_upstream(tmp_path_factory.mktemp("upstream") / "demo")


def _resolve(project: Settings, repo: Path, *defines: tuple[str, str]) -> RepoPackage:
    package = resolve(project, str(repo), "local", defines=defines)
    assert isinstance(package, RepoPackage)
    return package


def test_conditional_patch_is_chosen_by_define(project: Settings, upstream: Upstream, tmp_path: Path) -> None:
    repo = make_pkgrepo(tmp_path / "demo", upstream)
    plain = _resolve(project, repo)
    assert (plain.name, plain.version, plain.release) == ("demo", "1.0", "1.2.xcpng8.3")
    assert [p.name for p in plain.patch_files] == [FIX]
    assert plain.pinned_ref == "v1.0" and plain.upstream.said_by == "%global package_srccommit"
    extras = _resolve(project, repo, ("xcp_ng_section", "extras"))
    assert [p.name for p in extras.patch_files] == [FIX, EXTRAS]
    report = patch.check(project, extras, ["v1.0", "v1.1"], upstream=upstream.url)
    assert [(h.ref, h.patch, h.status) for h in report] == [
        ("v1.0", FIX, "applies"),
        ("v1.0", EXTRAS, "applies"),
        ("v1.1", FIX, "applies with offset"),
        ("v1.1", EXTRAS, "applies"),
    ]


def test_second_patch_that_fails_is_named_with_its_hunk(
    project: Settings, upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_pkgrepo(tmp_path / "demo", upstream, broken=True)
    package = _resolve(project, repo)
    report = patch.check(project, package, ["v1.0"], upstream=upstream.url)
    assert [(h.patch, h.status) for h in report] == [(FIX, "applies"), (BROKEN, "conflicts")]
    assert report[1].detail.startswith("Makefile hunk #1 (@@ -1,2 +1,2 @@) FAILED")
    tree = tmp_path / "tree"
    tree.mkdir()
    with tarfile.open(fileobj=io.BytesIO(tarball_bytes(upstream))) as tar:
        tar.extractall(tree, filter="data")
    tree = tree / "demo-1.0"
    with pytest.raises(PatchError, match=rf"patch 2/2 {BROKEN} does not apply: .*Makefile"):
        patch.apply_series(project, package, tree)
    # The CLI: the same verdict, exit 9, the package repository given as a directory.
    code = main(["patch", "check", str(repo), "--upstream", upstream.url, "--ref", "v1.0", "--json"])
    assert code == 9
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["applies", "conflicts"]
    # A build stops at %prep naming the patch.
    with pytest.raises(PatchError, match=rf"patch {BROKEN} does not apply to demo 1.0"):
        build_package(project, str(repo), stage="srpm")


def test_arch_package_builds_to_srpm_and_prep_with_its_commit_recorded(
    project: Settings,
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_pkgrepo(tmp_path / "demo", upstream, noarch=False, git_commit=True)
    result = build_package(project, str(repo), stage="srpm")
    assert [a.nevra for a in result.artifacts] == ["demo-1.0-1.2.xcpng8.3.src"]
    record = records.load(result.folder)
    assert record is not None and record.prep_checked and record.source.kind == "repository"
    assert record.source.dirty is False and record.source.commit and len(record.source.commit) == 40
    assert record.spec == (repo / "SPECS" / "demo.spec").read_text()  # used as it is
    header = rpmheader.read(result.folder / result.artifacts[0].path)
    assert header.patches == (FIX,) and TARBALL in header.sources
    # `inspect DIR`: the packages of the recorded build of the current inputs, without the engine.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setenv("XCPBUILD_PROJECT", str(project.project_root))
    monkeypatch.setenv("XCPBUILD_WORK", str(project.work_dir))
    assert main(["-q", "inspect", str(repo), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(h["nevra"], h["patches"]) for h in shown] == [("demo-1.0-1.2.xcpng8.3.src", [FIX])]
    monkeypatch.delenv("DOCKER_HOST")
    # Unchanged: reused without the engine. Changed and uncommitted: rebuilt, dirty recorded.
    assert build_package(project, str(repo), stage="srpm").reused
    (repo / "SOURCES" / FIX).write_text((repo / "SOURCES" / FIX).read_text() + "\n")
    again = build_package(project, str(repo), stage="srpm")
    assert not again.reused and again.record.source.dirty is True
    # Inputs that were never built: one line and the hint to build them.
    (repo / "SOURCES" / FIX).write_text((repo / "SOURCES" / FIX).read_text() + "\n")
    assert main(["-q", "inspect", str(repo)]) == UsageError.exit_code
    assert "has no build for local with its current inputs" in capsys.readouterr().err


def test_lfs_pointer_stops_the_build_until_the_file_is_supplied(
    project: Settings,
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_pkgrepo(tmp_path / "demo", upstream)
    real = (repo / "SOURCES" / TARBALL).read_bytes()
    (repo / "SOURCES" / TARBALL).write_bytes(lfs_pointer(real))
    with pytest.raises(
        SourceError, match=rf"SOURCES/{TARBALL} is a git-lfs pointer \(oid sha256:[0-9a-f]{{64}}, {len(real)} bytes\)"
    ) as info:
        build_package(project, str(repo), stage="srpm")
    assert info.value.hint and "git lfs pull" in info.value.hint and "--sources DIR" in info.value.hint
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / TARBALL).write_bytes(real + b"x")
    with pytest.raises(SourceError, match="names oid"):
        build_package(project, str(repo), stage="srpm", sources_dir=wrong)
    supplied = tmp_path / "supplied"
    supplied.mkdir()
    (supplied / TARBALL).write_bytes(real)
    result = build_package(project, str(repo), stage="srpm", sources_dir=supplied)
    assert result.record.source.supplied == (TARBALL,)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        pytest.param("missing-spec", "has no spec", id="missing-spec"),
        pytest.param("two-specs", "has 2 specs", id="two-specs"),
        pytest.param("unparsable", "rpmspec cannot parse .*demo.spec: line 8: Unknown tag: Bogus", id="unparsable"),
        pytest.param("missing-patch", f"Patch1000 of demo.spec names {FIX}, which is not in", id="missing-patch"),
        pytest.param("missing-source", f"Source0 of demo.spec names {TARBALL}, which is not in", id="missing-source"),
        pytest.param("lfs", "is a git-lfs pointer", id="lfs"),
        pytest.param("checksum", f"{TARBALL} has sha512 .* but the `sources` file of demo says", id="checksum"),
        pytest.param("retired", "is retired: demo is built from another package", id="retired"),
        pytest.param("stage-letter", "unknown --rpmbuild-stage `z`", id="stage-letter"),
    ],
)
def test_bad_package_repositories_are_one_line_and_nothing_is_built(
    project: Settings,
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    shape: str,
    message: str,
) -> None:
    repo = make_pkgrepo(tmp_path / "demo", upstream)
    extra: list[str] = []
    if shape == "missing-spec":
        (repo / "SPECS" / "demo.spec").unlink()
    elif shape == "two-specs":
        shutil.copy(repo / "SPECS" / "demo.spec", repo / "SPECS" / "other.spec")
    elif shape == "unparsable":
        (repo / "SPECS" / "demo.spec").write_text(spec_text().replace("License: MIT\n", "License: MIT\nBogus: y\n"))
    elif shape == "missing-patch":
        (repo / "SOURCES" / FIX).unlink()
    elif shape == "missing-source":
        (repo / "SOURCES" / TARBALL).unlink()
    elif shape == "lfs":
        (repo / "SOURCES" / TARBALL).write_bytes(lfs_pointer(b"elsewhere"))
    elif shape == "checksum":
        (repo / "sources").write_text(f"SHA512 ({TARBALL}) = {'0' * 128}\n")
    elif shape == "retired":
        for child in repo.iterdir():
            shutil.rmtree(child)
        (repo / ".retired").write_text("")
        (repo / "README.md").write_text("demo is built from another package now.\n")
    elif shape == "stage-letter":
        extra = ["--rpmbuild-stage", "z"]
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # asking the engine would fail
    monkeypatch.setenv("XCPBUILD_PROJECT", str(project.project_root))
    monkeypatch.setenv("XCPBUILD_WORK", str(project.work_dir))
    code = main(["-q", "build", str(repo), "--target", "local", *extra])
    lines = capsys.readouterr().err.strip().splitlines()
    err = [line for line in lines if line.startswith(("xcpbuild: ", "  hint: "))]  # the step's own ✗ line aside
    assert code != 0 and len(err) == 2, lines
    assert err[0].startswith("xcpbuild: error: ") and err[1].startswith("  hint: ")
    assert re.search(message, err[0]), err[0]
    builds = project.work_dir / "builds"
    assert not builds.exists() or [p.name for p in builds.iterdir()] == []


def test_a_sources_file_that_matches_lets_the_files_through(
    project: Settings,
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_pkgrepo(tmp_path / "demo", upstream)
    data = (repo / "SOURCES" / TARBALL).read_bytes()
    (repo / "sources").write_text(f"SHA512 ({TARBALL}) = {hashlib.sha512(data).hexdigest()}\n")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # staging needs no engine
    monkeypatch.setenv("XCPBUILD_PROJECT", str(project.project_root))
    monkeypatch.setenv("XCPBUILD_WORK", str(project.work_dir))
    out = tmp_path / "staged"
    assert main(["-q", "source", "fetch", str(repo), "--out", str(out), "--json"]) == 0
    staged = {item["name"]: item for item in json.loads(capsys.readouterr().out)}
    assert staged[TARBALL]["sha256"] == hashlib.sha256(data).hexdigest()
    assert (out / TARBALL).read_bytes() == data and (out / FIX).is_file()
    # One byte off: refused in one line, nothing staged.
    (repo / "sources").write_text(f"SHA512 ({TARBALL}) = {hashlib.sha512(data + b'x').hexdigest()}\n")
    again = tmp_path / "again"
    assert main(["-q", "source", "fetch", str(repo), "--out", str(again)]) != 0
    assert f"{TARBALL} has sha512" in capsys.readouterr().err
    assert not again.exists() or not any(again.iterdir())


def test_noarch_package_built_published_and_installed_with_dnf(
    project: Settings, upstream: Upstream, tmp_path: Path
) -> None:
    need_tool("rpmsign", "rpmkeys", "gpg", "dnf")
    repo = make_pkgrepo(tmp_path / "demo", upstream)
    result = build_package(project, str(repo), stage="rpm", out=tmp_path / "out")
    nevras = sorted(a.nevra for a in result.artifacts)
    assert nevras == ["demo-1.0-1.2.xcpng8.3.noarch", "demo-1.0-1.2.xcpng8.3.src"]
    key: GpgTestKey = make_key(tmp_path / "gnupg")
    try:
        root = tmp_path / "repo"
        publish.publish(result.paths(), root, "8.3", "testing", key=key)
        binary = root / "8" / "8.3" / "testing" / "x86_64"
        installed = dnf.install([dnf.Repo("testing", binary)], ["demo"], key.public_key, "8.3")
        assert "demo-1.0-1.2.xcpng8.3.noarch" in " ".join(installed.installed)
    finally:
        stop_agent(key)


def test_xcp_ng_dev_options_reach_rpmbuild_and_the_record(
    project: Settings,
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = make_pkgrepo(tmp_path / "demo", upstream, noarch=False)
    monkeypatch.setenv("XCPBUILD_PROJECT", str(project.project_root))
    monkeypatch.setenv("XCPBUILD_WORK", str(project.work_dir))
    argv = ["-q", "build", str(repo), "--rpmbuild-stage", "p", "--define", "xcp_ng_section extras"]
    argv += ["-e", "DEMO_TOKEN=s3cret-value", "--rpmbuild-opts=--noclean", "-o", str(tmp_path / "out"), "--json"]
    assert main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    record = records.load(Path(shown["folder"]))
    assert record is not None and [a.kind for a in record.outputs] == ["srpm"]
    assert record.options["rpmbuild_stage"] == "p" and record.options["defines"] == [["xcp_ng_section", "extras"]]
    binary = record.steps[-1].argv
    assert "-rp" in binary and "--noclean" in binary and "xcp_ng_section extras" in binary
    assert "s3cret-value" not in (Path(shown["folder"]) / records.RECORD).read_text()  # only a digest
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["demo-1.0-1.2.xcpng8.3.src.rpm"]
    log = (Path(shown["folder"]) / "build.log").read_text()
    assert f"SOURCES/{EXTRAS}" in log  # the --define chose the extras patch, which %prep applied


def test_shell_has_the_sources_staged_no_network_and_leaves_nothing(
    project: Settings,
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    docker_client: Any,
) -> None:
    repo = make_pkgrepo(tmp_path / "demo", upstream)
    monkeypatch.setenv("XCPBUILD_PROJECT", str(project.project_root))
    monkeypatch.setenv("XCPBUILD_WORK", str(project.work_dir))
    before = set(ctr.list_containers(docker_client, "shell"))
    command = "ls SOURCES SPECS; id -u; ls /sys/class/net; echo $DEMO"
    assert main(["-q", "shell", str(repo), "-e", "DEMO=here", "-c", command]) == 0
    out = capsys.readouterr().out.split()
    assert {TARBALL, FIX, "demo.spec", "1000", "here"} <= set(out)
    assert "lo" in out and not any(n.startswith(("eth", "en")) for n in out)
    assert set(ctr.list_containers(docker_client, "shell")) == before
