"""Image planning: tags hash every input, computed without an engine; the mirror comes from apt's config."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from xcpbuild.adapters import rootfs
from xcpbuild.adapters.rootfs import debian_mirror
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError
from xcpbuild.pipeline.build import image


def test_mirror_is_read_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    listd = tmp_path / "sources.list.d"
    listd.mkdir()
    (listd / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example.invalid/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://other.example.invalid/sec\nSuites: bookworm-security\n"
    )
    assert debian_mirror("bookworm", (tmp_path / "sources.list", listd)) == "http://mirror.example.invalid/debian"
    line = "deb [signed-by=/k.gpg] http://one.example.invalid/d trixie main"
    (tmp_path / "sources.list").write_text(f"# comment\n{line}\n")
    assert debian_mirror("trixie", (tmp_path / "sources.list", listd)) == "http://one.example.invalid/d"
    with pytest.raises(ConfigError):
        debian_mirror("sid", (tmp_path / "sources.list", listd))


def _project(tmp_path: Path) -> Settings:
    root = tmp_path / "project"
    for name in ("specs", "patches"):
        (root / name).mkdir(parents=True)
    shutil.copytree(PROJECT_ROOT / "containers", root / "containers")
    return Settings(project_root=root, cache_dir=tmp_path / "cache", work_dir=tmp_path / "work")


def test_tag_is_stable_and_changes_with_the_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootfs, "debian_mirror", lambda suite: f"http://mirror.example.invalid/{suite}")
    settings = _project(tmp_path)
    first = image.plan(settings, "local")
    assert first.tag == image.plan(settings, "local").tag
    assert first.tag.startswith("xcpbuild-local:") and dict(first.build_args)["DIST"] == ".xcpng8.3"
    assert first.base is not None and dict(first.build_args)["BASE"] == first.base.tag
    macros = settings.containers_dir / "local" / "macros.xcpbuild"
    macros.write_text(macros.read_text() + "%_demo 1\n")
    assert image.plan(settings, "local").tag != first.tag


def test_base_key_changes_with_the_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _project(tmp_path)
    monkeypatch.setattr(rootfs, "debian_mirror", lambda suite: "http://a.example.invalid/debian")
    a = image.plan(settings, "local")
    monkeypatch.setattr(rootfs, "debian_mirror", lambda suite: "http://b.example.invalid/debian")
    b = image.plan(settings, "local")
    assert a.base is not None and b.base is not None
    assert a.base.key != b.base.key and a.tag != b.tag


def test_family_targets_need_their_mirror_settings(tmp_path: Path) -> None:
    settings = _project(tmp_path)
    with pytest.raises(ConfigError) as info:
        image.plan(settings, "xcp-ng-8.3")
    assert "XCPBUILD_XCPNG_MIRROR" in info.value.message and "8/8.3/base/x86_64/" in info.value.message
    mirrors = {
        "XCPBUILD_XCPNG_MIRROR": "https://xcpng.example.invalid/mirror",
        "XCPBUILD_CENTOS_VAULT": "https://vault.example.invalid/centos",
        "XCPBUILD_EPEL_MIRROR": "https://epel.example.invalid/epel",
    }
    settings = replace(settings, variables=tuple(mirrors.items()))
    with pytest.raises(ConfigError) as info:
        image.plan(settings, "xcp-ng-8.3")  # gpgcheck on: the XCP-ng key is a setting too
    assert "XCPBUILD_XCPNG_KEY" in info.value.message
    planned = image.plan(settings, "xcp-ng-7.5")  # 7.x checked no signatures: no key needed
    assert dict(planned.build_args)["BASE"] == "centos:7.2.1511" and planned.base is None
    assert dict(planned.build_args)["DIST"] == ".el7.centos" and not planned.local_base
    assert planned.target.context_dir == settings.containers_dir / "el7"
    # A local base image replaces the registry one; it changes the tag and is never pulled.
    local = replace(settings, variables=(*settings.variables, ("XCPBUILD_BASE_IMAGES", "centos:7.2.1511=mine:7.2")))
    again = image.plan(local, "xcp-ng-7.5")
    assert dict(again.build_args)["BASE"] == "mine:7.2" and again.local_base and again.tag != planned.tag
    # A different mirror is a different image.
    moved = dict(mirrors, XCPBUILD_XCPNG_MIRROR="https://other.example.invalid/m")
    assert image.plan(replace(settings, variables=tuple(moved.items())), "xcp-ng-7.5").tag != planned.tag
