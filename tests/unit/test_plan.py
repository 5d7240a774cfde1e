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


def test_upgrade_from_names_the_channels_hosts_run() -> None:
    assert parse_plan(BASE, "p.toml").upgrade_from == ()  # the channel published
    plan = parse_plan(BASE.replace("[[packages]]", 'upgrade_from = ["base", "updates"]\n[[packages]]'), "p.toml")
    assert plan.upgrade_from == ("base", "updates")
    with pytest.raises(ConfigError, match=r"upgrade_from.*updatse"):
        parse_plan(BASE.replace("[[packages]]", 'upgrade_from = ["updatse"]\n[[packages]]'), "p.toml")
    with pytest.raises(ConfigError, match="non-empty list"):
        parse_plan(BASE.replace("[[packages]]", 'upgrade_from = "base"\n[[packages]]'), "p.toml")


def test_rpmv3_is_a_strict_flag() -> None:
    assert parse_plan(BASE, "p.toml").rpmv3 is False
    assert parse_plan(BASE.replace("[[packages]]", "rpmv3 = true\n[[packages]]"), "p.toml").rpmv3 is True
    with pytest.raises(ConfigError, match="`rpmv3` as true or false"):
        parse_plan(BASE.replace("[[packages]]", 'rpmv3 = "no"\n[[packages]]'), "p.toml")


def test_upgrade_from_reaches_publish_and_promote_from_the_plan_or_the_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--upgrade-from overrides the plan's; the release's publish and promote both get it."""
    import contextlib
    from collections.abc import Iterator

    from tests.conftest import PROJECT_ROOT
    from xcpbuild.adapters import gpg
    from xcpbuild.cli import app
    from xcpbuild.pipeline.publish import publish
    from xcpbuild.pipeline.release import release, summary

    plan_file = tmp_path / "p.toml"
    plan_file.write_text(
        BASE.replace('channel = "testing"', 'channel = "testing"\npromote_to = "updates"\nupgrade_from = ["base"]')
    )
    key = gpg.SigningKey(tmp_path, "F" * 40, tmp_path / "k.asc")
    seen: list[tuple[str, object]] = []

    def fake_publish(files: object, root: Path, rel: str, channel: str, **kw: object) -> object:
        seen.append((f"publish {channel}", kw["upgrade_from"]))
        return publish.PublishReport(root, rel, channel, key.fingerprint)

    def fake_promote(root: Path, rel: str, src: str, dst: str, names: object, **kw: object) -> object:
        seen.append((f"promote {dst}", kw["upgrade_from"]))
        return publish.PromoteReport(src, publish.PublishReport(root, rel, dst, key.fingerprint))

    monkeypatch.setattr(publish, "publish", fake_publish)
    monkeypatch.setattr(publish, "promote", fake_promote)
    plans: list[release.ReleaseOptions] = []

    @contextlib.contextmanager
    def own_key(*_: object) -> Iterator[gpg.SigningKey]:
        yield key

    def run(_settings: object, options: release.ReleaseOptions) -> object:
        plans.append(options)
        state = release._State(packages=list(options.plan.packages))
        state.built = {"x": summary.BuiltPackage(tmp_path, False, (), ())}
        release._publish(options, state, summary.PublishData(), tmp_path / "repo")
        release._install(options, state, summary.InstallData(), tmp_path / "repo")
        raise SystemExit(0)

    monkeypatch.setattr(release, "signing_key", own_key)
    monkeypatch.setattr(release, "run", run)
    for extra, wanted in (
        ([], ("base",)),
        (["--upgrade-from", "base", "--upgrade-from", "updates"], ("base", "updates")),
    ):
        seen.clear()
        with pytest.raises(SystemExit):
            app.main(["--project", str(PROJECT_ROOT), "release", "--plan", str(plan_file), *extra])
        assert plans[-1].plan.upgrade_from == wanted
        assert seen == [("publish testing", wanted), ("promote updates", wanted)]
