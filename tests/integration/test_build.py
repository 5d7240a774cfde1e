"""Builds against a real engine and rpmbuild: SRPMs with patches, %prep, RPMs, records, cache, time limits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

import pytest

from tests.integration.build_fixtures import VHD_PATCH, build_package, make_vhd_tool_upstream
from xcpbuild.adapters import container as ctr
from xcpbuild.adapters import owned, rpmheader
from xcpbuild.config import Settings
from xcpbuild.errors import PatchError, StepTimeoutError, UsageError
from xcpbuild.pipeline.build import build

SERVE_AND_FETCH = r"""
import hashlib, subprocess, sys, time, urllib.request
disk = "/tmp/disk.raw"
with open(disk, "wb") as f:
    f.write(bytes(range(256)) * 4096)
server = subprocess.Popen(
    ["/usr/bin/xcp-export-server", "--disk", "vm1=" + disk, "--host", "127.0.0.1", "--port", "18480",
     "--token", "T0KEN"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    first = server.stdout.readline().strip()
    print(first)
    url = "http://127.0.0.1:18480/export_raw_vdi?session_id=T0KEN&vdi=vm1&format=raw"
    with urllib.request.urlopen(url, timeout=30) as answer:
        body = answer.read()
        print("status", answer.status)
    print("same", hashlib.sha256(body).hexdigest() == hashlib.sha256(open(disk, "rb").read()).hexdigest())
finally:
    server.terminate()
    server.wait(10)
"""


def test_export_server_rpm_is_built_installed_and_serves(docker_client, project: Settings) -> None:  # type: ignore[no-untyped-def]
    result = build_package(project, "xcp-export-server", "local", stage="rpm")
    assert result.reused is False
    kinds = {a.kind: a for a in result.artifacts}
    assert kinds["srpm"].nevra == "xcp-export-server-0.1.0-1.xcpng8.3.src"
    assert kinds["rpm"].nevra == "xcp-export-server-0.1.0-1.xcpng8.3.noarch"
    rpm = result.folder / kinds["rpm"].path
    header = rpmheader.read(rpm)
    assert "python3" in header.requires
    paths = {f.path: f for f in header.files}
    assert paths["/usr/bin/xcp-export-server"].mode == "-rwxr-xr-x"
    assert "/usr/lib/systemd/system/xcp-export-server.service" in paths
    assert "/usr/lib/python3/dist-packages/xcpbuild/exportserver/__main__.py" in paths

    # The record: every input's sha256, the image, the rendered spec, each output's NEVRA and sha256.
    record = json.loads((result.folder / build.RECORD).read_text())
    assert record["status"] == "ok" and record["key"] == result.key
    assert record["image"]["tag"].startswith("xcpbuild-local:") and record["image"]["id"].startswith("sha256:")
    assert record["spec"] == (result.folder / "xcp-export-server.spec").read_text()
    roles = {i["name"]: i for i in record["inputs"]}
    service = project.specs_dir / "xcp-export-server" / "xcp-export-server.service"
    assert roles["xcp-export-server.service"]["sha256"] == hashlib.sha256(service.read_bytes()).hexdigest()
    for output in record["outputs"]:
        assert hashlib.sha256((result.folder / output["path"]).read_bytes()).hexdigest() == output["sha256"]
    assert "rpmbuild" in (result.folder / build.LOG).read_text()

    # Installed into a clean container of the local image, then started and fetched from.
    options = ctr.ContainerOptions(image=record["image"]["tag"], role="test")
    with ctr.BuildContainer(docker_client, options) as box:
        box.put([rpm], PurePosixPath("/tmp/rpms"))
        # --nodeps: Debian's rpm database does not know the python3 and /bin/sh dpkg installed.
        box.exec(["rpm", "-ivh", "--nodeps", f"/tmp/rpms/{rpm.name}"], user="0", timeout=120)
        assert "xcp-export-server-0.1.0-1.xcpng8.3.noarch" in box.exec(["rpm", "-qa"]).output
        unit = box.exec(["cat", "/usr/lib/systemd/system/xcp-export-server.service"]).output
        assert "EnvironmentFile=/etc/sysconfig/xcp-export-server" in unit
        served = box.exec(["python3", "-c", SERVE_AND_FETCH], timeout=120).output
    assert "listening on http://127.0.0.1:18480" in served
    assert "status 200" in served and "same True" in served


def test_same_inputs_reuse_the_record_without_an_engine(
    project: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = build_package(project, "xcp-export-server", "local", stage="srpm")
    assert first.reused is False and first.record.prep_checked is True
    # No engine answers now: a reuse must not need one (so it starts no container).
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    again = build_package(project, "xcp-export-server", "local", stage="srpm", out=tmp_path / "out")
    assert again.reused is True
    assert (again.folder, again.key, again.artifacts) == (first.folder, first.key, first.artifacts)
    assert [p.name for p in again.copied] == ["xcp-export-server-0.1.0-1.xcpng8.3.src.rpm"]
    # A changed input is a different build, so it does need the engine.
    extra = project.specs_dir / "xcp-export-server" / "xcp-export-server.sysconfig"
    extra.write_text(extra.read_text() + "# changed\n")
    from xcpbuild.errors import EngineError

    with pytest.raises(EngineError):
        build_package(project, "xcp-export-server", "local", stage="srpm")


def _vhd_tool_build(project: Settings, upstream: Path, **kw: object) -> build.BuildResult:
    # The stand-in upstream is not v0.20.0 (whose tarball is pinned), so build its branch as a snapshot.
    return build_package(project, "vhd-tool", "local", upstream=str(upstream), ref="main", **kw)


def test_vhd_tool_srpm_holds_the_patches_and_spec_and_prep_applies_them(project: Settings, tmp_path: Path) -> None:
    upstream = make_vhd_tool_upstream(tmp_path / "vhd-tool")
    result = _vhd_tool_build(project, upstream, stage="srpm")
    (srpm,) = result.paths()
    header = rpmheader.read(srpm)
    assert header.is_source and header.name == "vhd-tool"
    assert header.release == "4.4.xcpng8.3"
    assert header.patches == (VHD_PATCH.name,)
    names = {f.path for f in header.files}
    assert {VHD_PATCH.name, "vhd-tool.spec", "vhd-tool-sparse_dd-conf"} <= names
    spec = result.record.spec
    assert f"Patch1000: {VHD_PATCH.name}" in spec and "%autosetup -p1" in spec
    log = (result.folder / build.LOG).read_text()
    assert "-rp --nodeps" in log and VHD_PATCH.name in log  # rpmbuild applied the patch itself in %prep


def test_a_patch_that_does_not_apply_fails_the_build_naming_it(project: Settings, tmp_path: Path) -> None:
    upstream = make_vhd_tool_upstream(tmp_path / "vhd-tool", broken=True)
    with pytest.raises(PatchError) as info:
        _vhd_tool_build(project, upstream, stage="srpm")
    assert f"patch {VHD_PATCH.name} does not apply" in info.value.message
    assert "build.log" in info.value.message
    (folder,) = (project.work_dir / "builds").glob("vhd-tool-*")
    assert json.loads((folder / build.RECORD).read_text())["status"] == "failed"


def test_binary_build_with_el_build_requires_is_refused_on_local_before_any_container(
    project: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = make_vhd_tool_upstream(tmp_path / "vhd-tool")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(UsageError) as info:
        _vhd_tool_build(project, upstream, stage="rpm")
    assert "ocaml-camlp4-devel" in info.value.message and "xcp-ng-" in info.value.hint


SLOW_SPEC = """Name: slow
Version: {{ version }}
Release: {{ release_field }}
Summary: {{ summary }}
License: {{ license }}
BuildArch: noarch
{{ source_lines }}

%description
{{ description }}

%prep
%autosetup
sleep 600

%files
"""


def test_a_build_over_its_time_limit_is_killed_and_its_container_removed(docker_client, project: Settings) -> None:  # type: ignore[no-untyped-def]
    (project.specs_dir / "slow.toml").write_text(
        'name = "slow"\nsummary = "sleeps"\nlicense = "MIT"\nurl = "https://example.invalid"\n'
        'source_kind = "project"\nproject_paths = ["xcpbuild/__init__.py"]\ntemplate = "slow.spec.j2"\n'
        '[targets.default]\nversion = "1"\nref = "project"\n'
    )
    (project.specs_dir / "slow.spec.j2").write_text(SLOW_SPEC)
    # Only this process's build containers: other jobs on the engine may be building meanwhile.
    mine = {"label": [f"{ctr.LABEL}=build", f"{ctr.OWNER_LABEL}={owned.me().label}"]}
    before = {c.name for c in docker_client.sdk.containers.list(all=True, filters=mine)}
    with pytest.raises(StepTimeoutError) as info:
        build_package(project, "slow", "local", stage="rpm", timeout=8)
    assert "exceeded its 8s time limit" in info.value.message and "removed" in info.value.message
    assert {c.name for c in docker_client.sdk.containers.list(all=True, filters=mine)} == before
