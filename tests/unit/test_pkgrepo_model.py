"""Package repositories read from their files alone: layout, retired, git-lfs pointers, `sources`, spec facts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fixtures.pkgrepo import lfs_pointer
from xcpbuild.errors import ConfigError, UsageError
from xcpbuild.model import pkgrepo
from xcpbuild.model.stage import parse_rpmbuild_stage
from xcpbuild.pipeline.build.record import Artifact, BuildRecord, Input, SourceInfo, StepRun


def test_layout_spec_in_specs_or_at_the_top(tmp_path: Path) -> None:
    (tmp_path / "a" / "SPECS").mkdir(parents=True)
    (tmp_path / "a" / "SOURCES").mkdir()
    (tmp_path / "a" / "SPECS" / "x.spec").write_text("")
    found = pkgrepo.locate(tmp_path / "a")
    assert found.name == "x" and found.sources_dir == tmp_path / "a" / "SOURCES"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "y.spec").write_text("")
    top = pkgrepo.locate(tmp_path / "b")
    assert top.spec_path == tmp_path / "b" / "y.spec" and top.sources_dir == tmp_path / "b"


def test_missing_and_two_specs_are_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "SPECS").mkdir()
    with pytest.raises(ConfigError, match="has no spec") as none:
        pkgrepo.locate(tmp_path)
    assert none.value.hint and "SPECS/NAME.spec" in none.value.hint
    (tmp_path / "SPECS" / "a.spec").write_text("")
    (tmp_path / "SPECS" / "b.spec").write_text("")
    with pytest.raises(ConfigError, match=r"has 2 specs .*: a\.spec, b\.spec"):
        pkgrepo.locate(tmp_path)


def test_retired_repository_is_refused_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / ".retired").write_text("")
    (tmp_path / "README.md").write_text("# vhd-tool\n\nvhd-tool is built from xapi.spec since 8.3.\n")
    with pytest.raises(ConfigError) as info:
        pkgrepo.locate(tmp_path)
    assert "is retired: vhd-tool vhd-tool is built from xapi.spec since 8.3." in info.value.message


def test_lfs_pointer_is_told_from_a_real_file() -> None:
    data = b"real tarball bytes"
    pointer = pkgrepo.parse_lfs_pointer(lfs_pointer(data))
    assert pointer == pkgrepo.LfsPointer(hashlib.sha256(data).hexdigest(), len(data))
    assert pkgrepo.parse_lfs_pointer(data) is None
    assert pkgrepo.parse_lfs_pointer(lfs_pointer(data) + b"x" * 2000) is None


def test_sources_file_both_forms() -> None:
    text = f"SHA512 (a.tar.gz) = {'ab' * 64}\n{'cd' * 32}  b.tar.xz\n\n# comment\n"
    found = pkgrepo.parse_sources_file(text, "sources")
    assert found == {
        "a.tar.gz": pkgrepo.Checksum("sha512", "ab" * 64),
        "b.tar.xz": pkgrepo.Checksum("sha256", "cd" * 32),
    }
    with pytest.raises(ConfigError, match="sources:1: `nonsense` is not a checksum line"):
        pkgrepo.parse_sources_file("nonsense\n", "sources")


def test_spec_facts_and_upstream_in_spec_order() -> None:
    expanded = (
        "Name: vhd-tool\nVersion: 0.20.0\nRelease: 4.2.xcp\nURL: https://github.com/xapi-project/vhd-tool\n"
        "Source0: https://code.example.invalid/vhd-tool/archive?at=v0.20.0&format=tar.gz#/vhd-tool-0.20.0.tar.gz\n"
        "Source1: vhd-tool-sparse_dd-conf\nPatch1001: b.patch\nPatch1000: a.patch\n"
        "Provides: gitsha(https://code.example.invalid/vhd-tool.git) = 76a543f1c0ffee\n"
        "BuildRequires: ocaml-findlib, gcc >= 4\n%changelog\nPatch9: not-a-tag\n"
    )
    facts = pkgrepo.spec_facts(expanded)
    assert (facts.name, facts.version, facts.release) == ("vhd-tool", "0.20.0", "4.2.xcp")
    assert [s.file for s in facts.sources] == ["vhd-tool-0.20.0.tar.gz", "vhd-tool-sparse_dd-conf"]
    assert [(p.number, p.file) for p in facts.patches] == [(1001, "b.patch"), (1000, "a.patch")]
    assert facts.build_requires == ("ocaml-findlib", "gcc")
    upstream = pkgrepo.spec_upstream("", expanded, facts)
    said = "Provides: gitsha(...)"
    assert upstream == pkgrepo.Upstream("https://code.example.invalid/vhd-tool.git", "76a543f1c0ffee", said)
    eight = pkgrepo.spec_upstream("%global package_srccommit v0.43.0\n", "Name: x", facts)
    assert (eight.url, eight.ref) == ("https://github.com/xapi-project/vhd-tool", "v0.43.0")


def test_rpmbuild_stage_letters() -> None:
    assert [parse_rpmbuild_stage(v) for v in ("b", "-bb", "bp", "a")] == ["b", "b", "p", "a"]
    with pytest.raises(UsageError, match="rpmbuild has no -bz") as info:
        parse_rpmbuild_stage("z")
    assert info.value.hint and "p (%prep only)" in info.value.hint


def test_build_record_round_trips_through_its_json() -> None:
    record = BuildRecord(
        package="demo",
        version="1.0",
        release="1.2.xcpng8.3",
        target="local",
        dist=".xcpng8.3",
        stage="srpm",
        key="k" * 64,
        started="2018-08-02T00:00:00+00:00",
        image_tag="xcpbuild-local:abc",
        image_id="sha256:def",
        source=SourceInfo("repository", repository="/src/demo", commit="c" * 40, dirty=True, supplied=("a.tgz",)),
        inputs=(Input("a.tgz", "source", "1" * 64), Input("demo.spec", "spec", "2" * 64)),
        spec="Name: demo\n",
        options={"defines": [["xcp_ng_section", "extras"]]},
        status="ok",
        outputs=(Artifact("SRPMS/demo.src.rpm", "srpm", "demo-1.0-1.2.xcpng8.3.src", "3" * 64),),
        steps=(StepRun(("rpmbuild", "-bs"), 0, 1.5),),
        prep_checked=True,
        seconds=2.0,
    )
    data = record.to_json()
    assert data["image"] == {"tag": "xcpbuild-local:abc", "id": "sha256:def"} and data["schema"] == 1
    assert BuildRecord.from_json(data) == record
    with pytest.raises(ValueError, match="unknown stage"):
        BuildRecord.from_json({**data, "stage": "all"})
