"""Release plans: the embedded default, strict keys, and --upstream parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from xcpbuild.errors import ConfigError, UsageError
from xcpbuild.model.plan import load_plan, parse_plan
from xcpbuild.pipeline.release.release import parse_upstreams


def test_embedded_default_is_the_offline_local_loop() -> None:
    plan = load_plan(None)
    assert plan.target == "local"
    assert (plan.release, plan.major, plan.channel, plan.promote_to) == ("8.3", "8", "testing", "updates")
    by_name = {p.name: p for p in plan.packages}
    assert by_name["xcp-export-server"].verify == "export-server"
    assert by_name["xcp-export-server"].install
    vhd_tool = by_name["vhd-tool"]
    assert (vhd_tool.stage, vhd_tool.verify, vhd_tool.ref) == ("srpm", "probe", "v0.20.0")
    assert vhd_tool.upstream == "https://github.com/xapi-project/vhd-tool.git"
    assert vhd_tool.if_unreachable == "leave-out"
    assert by_name["xcpbuild-local-platform"].channel == "base"


def test_every_planned_package_has_a_definition() -> None:
    from tests.conftest import PROJECT_ROOT
    from xcpbuild.model.package import find_package

    for planned in load_plan(None).packages:
        assert find_package(PROJECT_ROOT / "specs", planned.name).name == planned.name


BASE = 'target = "local"\nrelease = "8.3"\nchannel = "testing"\n[[packages]]\nname = "x"\n'


def test_unknown_keys_and_bad_values_are_rejected() -> None:
    with pytest.raises(ConfigError, match="stagee"):
        parse_plan(BASE + 'stagee = "rpm"\n', "p.toml")
    with pytest.raises(ConfigError, match=r"X\.Y"):
        parse_plan(BASE.replace('"8.3"', '"eight"'), "p.toml")
    with pytest.raises(ConfigError, match="stage"):
        parse_plan(BASE + 'stage = "deb"\n', "p.toml")
    with pytest.raises(ConfigError, match="leave-out"):
        parse_plan(BASE + 'if_unreachable = "skip"\n', "p.toml")
    with pytest.raises(ConfigError, match="needs_upstream"):
        parse_plan(BASE + "needs_upstream = true\n", "p.toml")
    with pytest.raises(ConfigError, match="no packages"):
        parse_plan('target = "local"\nrelease = "8.3"\nchannel = "testing"\n', "p.toml")


def test_missing_plan_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_plan(tmp_path / "nope.toml")


def test_upstream_values() -> None:
    assert parse_upstreams(["vhd-tool=/src/v", "a=file:///x=y"]) == {"vhd-tool": "/src/v", "a": "file:///x=y"}
    with pytest.raises(UsageError, match="PKG=PATH_OR_URL"):
        parse_upstreams(["vhd-tool"])
