"""`source fetch` against fixture upstream repositories: archive, reproducibility, pins, bad input."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from tests.fixtures.upstream import PACKAGE, TOUCHED, Upstream, make_project, make_upstream
from xcpbuild.cli import app
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError, SourceError
from xcpbuild.model.package import find_package
from xcpbuild.pipeline.sources import source


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    return make_upstream(tmp_path_factory.mktemp("upstream") / "demo")


def _settings(tmp_path: Path, upstream: Upstream, sha256: str | None = None) -> Settings:
    project = make_project(tmp_path / "project", upstream, sha256=sha256)
    return Settings(project_root=project, cache_dir=tmp_path / "cache", work_dir=tmp_path / "work")


def test_fetch_writes_a_prefixed_tarball_of_the_pinned_tag(tmp_path: Path, upstream: Upstream) -> None:
    settings = _settings(tmp_path, upstream)
    pkg = find_package(settings.specs_dir, PACKAGE)
    fetched = source.fetch(settings, pkg)
    assert fetched.tarball == settings.work_dir / "sources" / PACKAGE / "demo-1.0.tar.gz"
    assert (fetched.version, fetched.ref) == ("1.0", "v1.0")
    assert fetched.commit == upstream.git("rev-parse", "v1.0^{commit}")
    assert fetched.sha256 == hashlib.sha256(fetched.tarball.read_bytes()).hexdigest()
    with tarfile.open(fetched.tarball) as tar:
        names = tar.getnames()
        member = tar.extractfile(f"demo-1.0/{TOUCHED}")
        assert member is not None
        assert member.read().decode() == upstream.git("show", f"v1.0:{TOUCHED}") + "\n"
    assert all(name.startswith("demo-1.0") for name in names)
    assert "demo-1.0/doc/notes.txt" in names  # v1.0, before the rename
    # The mirror lives in the cache, under git/.
    assert list((settings.cache_dir / "git").glob("demo-*.git"))


def test_fetching_twice_gives_the_same_bytes_even_from_a_fresh_cache(tmp_path: Path, upstream: Upstream) -> None:
    settings = _settings(tmp_path, upstream)
    pkg = find_package(settings.specs_dir, PACKAGE)
    first = source.fetch(settings, pkg, out_dir=tmp_path / "a")
    second = source.fetch(settings, pkg, out_dir=tmp_path / "b")  # cached mirror, updated
    fresh = Settings(settings.project_root, tmp_path / "other-cache", settings.work_dir)
    third = source.fetch(fresh, pkg, out_dir=tmp_path / "c")
    data = first.tarball.read_bytes()
    assert data == second.tarball.read_bytes() == third.tarball.read_bytes()
    assert first.sha256 == second.sha256 == third.sha256


def test_matching_pin_passes_and_mismatch_stops_with_both_values(tmp_path: Path, upstream: Upstream) -> None:
    plain = _settings(tmp_path / "m", upstream)
    measured = source.fetch(plain, find_package(plain.specs_dir, PACKAGE)).sha256
    good = _settings(tmp_path / "good", upstream, sha256=measured)
    assert source.fetch(good, find_package(good.specs_dir, PACKAGE)).sha256 == measured

    wrong = "0" * 64
    bad = _settings(tmp_path / "bad", upstream, sha256=wrong)
    with pytest.raises(SourceError) as info:
        source.fetch(bad, find_package(bad.specs_dir, PACKAGE), out_dir=tmp_path / "bad-out")
    assert measured in info.value.message and wrong in info.value.message
    assert not (tmp_path / "bad-out").exists() or not list((tmp_path / "bad-out").iterdir())


def test_ref_override_names_the_tarball_after_the_tag_and_skips_the_pin(tmp_path: Path, upstream: Upstream) -> None:
    settings = _settings(tmp_path, upstream, sha256="0" * 64)
    fetched = source.fetch(settings, find_package(settings.specs_dir, PACKAGE), ref="v1.1")
    assert fetched.tarball.name == "demo-1.1.tar.gz"
    with tarfile.open(fetched.tarball) as tar:
        assert "demo-1.1/doc/NOTES.txt" in tar.getnames()  # after the rename
    branch = source.fetch(settings, find_package(settings.specs_dir, PACKAGE), ref="fix")
    assert branch.version == f"1.0+git{branch.commit[:10]}"


def test_a_new_upstream_tag_reaches_the_cached_mirror(tmp_path: Path) -> None:
    up = make_upstream(tmp_path / "up")
    settings = _settings(tmp_path, up)
    pkg = find_package(settings.specs_dir, PACKAGE)
    source.fetch(settings, pkg)
    up.git("tag", "v3.0", "v2.0")
    assert source.fetch(settings, pkg, ref="v3.0").commit == up.git("rev-parse", "v2.0^{commit}")


def test_local_path_and_file_url_both_work(tmp_path: Path, upstream: Upstream) -> None:
    settings = _settings(tmp_path, upstream)
    pkg = find_package(settings.specs_dir, PACKAGE)
    by_path = source.fetch(settings, pkg, upstream=str(upstream.path), out_dir=tmp_path / "p")
    by_url = source.fetch(settings, pkg, upstream=upstream.url, out_dir=tmp_path / "u")
    assert by_path.sha256 == by_url.sha256


def test_unknown_ref_suggests_a_close_tag(tmp_path: Path, upstream: Upstream) -> None:
    settings = _settings(tmp_path, upstream)
    with pytest.raises(SourceError) as info:
        source.fetch(settings, find_package(settings.specs_dir, PACKAGE), ref="v1.5")
    assert "unknown ref `v1.5`" in info.value.message
    assert "v1." in info.value.hint


def test_unreachable_upstream_fails_cleanly_and_leaves_no_partial_mirror(tmp_path: Path, upstream: Upstream) -> None:
    settings = _settings(tmp_path, upstream)
    pkg = find_package(settings.specs_dir, PACKAGE)
    with pytest.raises(SourceError, match="cannot clone"):
        source.fetch(settings, pkg, upstream=f"file://{tmp_path}/nowhere.git")
    assert not list((settings.cache_dir / "git").iterdir())
    with pytest.raises(SourceError, match="neither a URL nor an existing path"):
        source.fetch(settings, pkg, upstream=str(tmp_path / "missing-clone"))


def test_retired_target_is_refused(tmp_path: Path, upstream: Upstream) -> None:
    settings = _settings(tmp_path, upstream)
    toml = settings.specs_dir / f"{PACKAGE}.toml"
    toml.write_text(toml.read_text() + '\n[targets."old"]\nretired = "built inside another package"\n')
    with pytest.raises(ConfigError, match="built inside another package"):
        source.fetch(settings, find_package(settings.specs_dir, PACKAGE), target="old")


def _cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    monkeypatch.setenv("XCPBUILD_PROJECT", str(settings.project_root))
    monkeypatch.setenv("XCPBUILD_CACHE", str(settings.cache_dir))
    monkeypatch.setenv("XCPBUILD_WORK", str(settings.work_dir))
    return app.main(list(argv))


def test_cli_fetch_json_and_bad_inputs(
    tmp_path: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path, upstream)
    assert _cli(monkeypatch, settings, "-q", "source", "fetch", PACKAGE, "--json", "--out", str(tmp_path / "o")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == "1.0" and Path(out["tarball"]).is_file()

    cases = [
        (("source", "fetch", "dmeo"), ConfigError.exit_code, "unknown package `dmeo`"),
        (("source", "fetch", PACKAGE, "--ref", "nope"), SourceError.exit_code, "unknown ref `nope`"),
        (
            ("source", "fetch", PACKAGE, "--upstream", "file:///nonexistent/x.git"),
            SourceError.exit_code,
            "cannot clone",
        ),
    ]
    for argv, code, message in cases:
        assert _cli(monkeypatch, settings, "-q", *argv) == code
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("✗")]
        assert len(err) == 2 and message in err[0] and err[1].startswith("  hint: "), err
