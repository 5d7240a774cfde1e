"""BuildRequires met only from a repository xcpbuild has just published, on `local`, with dnf and gpgcheck.

The test makes two package repositories: ``dep`` (noarch, installs a marker
file) and ``user`` (``BuildRequires: xcpbuild-dep-fixture``; its %build copies
the marker, so its RPM shows the dependency was really installed). ``dep`` is
built on local, published signed with xcpbuild's publish, and then ``user`` is
built on local with ``--repo-url file://…`` pointing at that channel: dnf
installs ``dep`` into the build-dependency layer (network none), checking the
repomd and package signatures against ``--repo-key``; the build container has
no network either.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.fixtures.gpgkeys import make_key, stop_agent
from tests.integration.build_fixtures import build_package
from xcpbuild.adapters import container as ctr
from xcpbuild.adapters import owned, rpmheader
from xcpbuild.cli.app import main
from xcpbuild.config import Settings
from xcpbuild.errors import BuildError
from xcpbuild.pipeline.build import record as records
from xcpbuild.pipeline.publish import publish

DEP = "xcpbuild-dep-fixture"
MARKER = "made by the dep fixture\n"


def _spec(name: str, *, requires: str = "", build: str = "", files: str) -> str:
    return (
        f"Name: {name}\nVersion: 1.0\nRelease: 1%{{?dist}}\nSummary: fixture\nLicense: MIT\nBuildArch: noarch\n"
        f"Source0: marker.txt\n{requires}\n%description\nA fixture.\n\n%prep\n\n%build\n{build}\n"
        f"%install\nmkdir -p %{{buildroot}}/usr/share/{name}\n"
        f"cp {files} %{{buildroot}}/usr/share/{name}/\n\n"
        f"%files\n/usr/share/{name}\n\n"
        "%changelog\n* Mon Jan 01 2024 Fixture <fixture@example.invalid> - 1.0-1\n- A fixture\n"
    )


def _pkgrepo(root: Path, spec: str) -> Path:
    (root / "SPECS").mkdir(parents=True)
    (root / "SOURCES").mkdir()
    (root / "SPECS" / f"{root.name}.spec").write_text(spec)
    (root / "SOURCES" / "marker.txt").write_text(MARKER)
    return root


def _user(root: Path) -> Path:
    # %build reads the file the dep installed: it fails unless dnf really put the dep in.
    build = f"cp /usr/share/{DEP}/marker.txt from-dep.txt\n"
    return _pkgrepo(
        root,
        _spec("user", requires=f"BuildRequires: {DEP}\n", build=build, files="from-dep.txt"),
    )


def _run(argv: list[str], project: Settings, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("XCPBUILD_PROJECT", str(project.project_root))
    monkeypatch.setenv("XCPBUILD_WORK", str(project.work_dir))
    monkeypatch.setenv("XCPBUILD_CACHE", str(project.cache_dir))
    return main(argv)


def test_build_requires_come_from_a_repository_xcpbuild_published(  # type: ignore[no-untyped-def]
    project: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    docker_client,
) -> None:
    need_tool("rpmsign", "rpmkeys", "gpg", "dnf")
    dep = build_package(project, str(_pkgrepo(tmp_path / "dep", _spec(DEP, files="%{SOURCE0}"))), stage="rpm")
    key = make_key(tmp_path / "signer")
    other = make_key(tmp_path / "stranger")
    try:
        root = tmp_path / "published"
        publish.publish(dep.paths(), root, "8.3", "testing", key=key)
    finally:
        stop_agent(key)
        stop_agent(other)
    channel = root / "8" / "8.3" / "testing" / "x86_64"
    user = _user(tmp_path / "user")

    # Without the repository the BuildRequires cannot be met: one line, nothing built.
    assert _run(["-q", "build", str(user)], project, monkeypatch) != 0
    err = capsys.readouterr().err
    assert f"needs EL build dependencies ({DEP})" in err and "--repo-url" in err
    # A repository signed by another key is refused by dnf itself (repo_gpgcheck).
    argv = ["-q", "build", str(user), "--repo-url", channel.as_uri(), "--json"]
    assert _run([*argv, "--repo-key", str(other.public_key)], project, monkeypatch) != 0
    refused = capsys.readouterr().err
    assert "repomd.xml GPG signature verification error" in refused, refused

    assert _run([*argv, "--repo-key", str(key.public_key)], project, monkeypatch) == 0
    shown = json.loads(capsys.readouterr().out)
    rpms = [Path(shown["folder"]) / a["path"] for a in shown["artifacts"] if a["kind"] == "rpm"]
    assert [rpmheader.read(p).nevra for p in rpms] == ["user-1.0-1.xcpng8.3.noarch"]
    assert "/usr/share/user/from-dep.txt" in [f.path for f in rpmheader.read(rpms[0]).files]
    record = records.load(Path(shown["folder"]))
    assert record is not None and record.status == "ok"
    given = record.options["given_repos"]
    assert given[0].startswith(channel.as_uri() + "#") and given[-1].startswith("key:")
    # The binary step ran in the layer holding the dep (the build containers have no network).
    assert any(step.argv[0] == "rpmbuild" and "--rebuild" in step.argv for step in record.steps)
    layer = re.search(
        r"# container \S+ from (xcpbuild-local-deps:\w+)", (Path(shown["folder"]) / "build.log").read_text()
    )
    assert layer is not None and ctr.image_id(docker_client, layer.group(1)) is not None

    # Re-publishing the channel with the same content keys the same build: it is reused.
    assert _run([*argv, "--repo-key", str(key.public_key)], project, monkeypatch) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is True

    # A BuildRequires nothing provides: dnf's own reason is the error's line and is in build.log.
    missing = "xcpbuild-nothing-provides-this"
    wants = _pkgrepo(
        tmp_path / "wants",
        _spec("wants", requires=f"BuildRequires: {DEP}\nBuildRequires: {missing}\n", files="%{SOURCE0}"),
    )
    argv = ["-q", "build", str(wants), "--repo-url", channel.as_uri(), "--repo-key", str(key.public_key)]
    assert _run(argv, project, monkeypatch) == BuildError.exit_code
    lines = capsys.readouterr().err.strip().splitlines()
    error = next(line for line in lines if line.startswith("xcpbuild: error: "))
    said = f"dnf builddep could not install the BuildRequires of wants: No matching package to install: '{missing}'"
    assert said in error
    assert any(line.startswith("  hint: ") and "build.log" in line for line in lines)
    logs = list((project.work_dir / "builds").glob("wants-*/build.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert f"No matching package to install: '{missing}'" in text
    assert f"# dnf builddep failed: No matching package to install: '{missing}'" in text
    failed = records.load(logs[0].parent)
    assert failed is not None and failed.status == "failed" and missing in (failed.error or "")
    assert not [p for p in failed.outputs if p.kind == "rpm"]  # nothing but the SRPM was made
    mine = {"label": f"{ctr.OWNER_LABEL}={owned.me().label}"}
    assert docker_client.sdk.containers.list(all=True, filters=mine) == []  # no container of this run is left
