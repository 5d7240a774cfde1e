"""Package definitions: parsing, per-target pins, release rule, and rejection of bad input."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from xcpbuild.errors import ConfigError
from xcpbuild.model.package import find_package, load_package, read_series

GOOD = """
name = "demo"
summary = "A demo"
license = "MIT"
url = "https://example.invalid/demo"
upstream = "file:///nowhere/demo.git"
template = "demo.spec.j2"

[targets.default]
version = "1.0"
ref = "v1.0"
base_release = "4"
xcpng_release = 2

[targets."xcp-ng-8.3"]
version = "1.1"
ref = "v1.1"
sha256 = "%s"

[[changelog]]
version = "1.0-4.2"
date = 2018-08-16
author = "Team <team@example.invalid>"
changes = ["Fix it"]
""" % ("a" * 64)


def _write(tmp_path: Path, text: str, name: str = "demo") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_loads_targets_over_default_and_release_rule(tmp_path: Path) -> None:
    pkg = load_package(_write(tmp_path, GOOD))
    assert pkg.pin("local").version == "1.0"
    assert pkg.pin("local").release == "4.2"
    pinned = pkg.pin("xcp-ng-8.3")
    assert (pinned.version, pinned.ref, pinned.release, pinned.sha256) == ("1.1", "v1.1", "4.2", "a" * 64)
    assert pkg.changelog[0].rpm_date == "Thu Aug 16 2018"
    assert pkg.changelog[0].date == dt.date(2018, 8, 16)
    assert pkg.tarball_name("1.0") == "demo-1.0.tar.gz"


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_package(_write(tmp_path, GOOD.replace("summary =", "sumary =")))
    assert "sumary" in info.value.message
    assert "summary" in info.value.hint


def test_unknown_target_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_package(_write(tmp_path, GOOD.replace('ref = "v1.1"', 'reff = "v1.1"')))
    assert "reff" in info.value.message and "ref" in info.value.hint


def test_bad_sha_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sha256"):
        load_package(_write(tmp_path, GOOD.replace("a" * 64, "xyz")))


def test_unknown_package_suggests_a_close_name(tmp_path: Path) -> None:
    _write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as info:
        find_package(tmp_path, "dmeo")
    assert "demo" in info.value.hint


def test_series_order_comments_and_malformed_lines(tmp_path: Path) -> None:
    patches = tmp_path / "demo"
    patches.mkdir()
    (patches / "b.patch").write_text("")
    (patches / "a.patch").write_text("")
    (patches / "series").write_text("# order matters\nb.patch\n\na.patch  # second\n")
    assert [p.name for p in read_series(tmp_path, "demo")] == ["b.patch", "a.patch"]
    (patches / "series").write_text("../etc/passwd\n")
    with pytest.raises(ConfigError, match="series:1"):
        read_series(tmp_path, "demo")
    (patches / "series").write_text("missing.patch\n")
    with pytest.raises(ConfigError, match="does not exist"):
        read_series(tmp_path, "demo")


def test_target_series_and_retired_keys(tmp_path: Path) -> None:
    text = GOOD + '\n[targets."xcp-ng-8.2"]\nseries = ""\n\n[targets.gone]\nretired = "built inside another package"\n'
    pkg = load_package(_write(tmp_path, text))
    assert pkg.pin("local").series == "series"
    assert pkg.pin("xcp-ng-8.2").series == ""
    assert pkg.pin("xcp-ng-8.2").version == "1.0"  # still inherits the default
    with pytest.raises(ConfigError, match="not built for target gone: built inside another package"):
        pkg.pin("gone")
    with pytest.raises(ConfigError, match="series"):
        load_package(_write(tmp_path, GOOD + '\n[targets.bad]\nseries = "../x"\n'))


def test_read_series_of_an_empty_name_is_empty(tmp_path: Path) -> None:
    assert read_series(tmp_path, "demo", "") == []
