"""Patch series against fixture upstreams: every `patch check` status, atomic apply, refresh round trip."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.fixtures.upstream import (
    EXPECTED_STATUS,
    FIX_BRANCH,
    FIX_PATCH_NAME,
    PACKAGE,
    TOUCHED,
    Upstream,
    make_project,
    make_upstream,
)
from xcpbuild.cli import app
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError, PatchError, SourceError
from xcpbuild.model.package import find_package
from xcpbuild.pipeline.sources import hunks, patch
from xcpbuild.pipeline.sources.package import resolve


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    return make_upstream(tmp_path_factory.mktemp("upstream") / "demo")


@pytest.fixture
def settings(tmp_path: Path, upstream: Upstream) -> Settings:
    project = make_project(tmp_path / "project", upstream)
    return Settings(project_root=project, cache_dir=tmp_path / "cache", work_dir=tmp_path / "work")


def _tree(upstream: Upstream, ref: str, dest: Path) -> Path:
    """The files of ``ref`` unpacked at ``dest`` (a plain directory, like an unpacked tarball)."""
    data = subprocess.run(["git", "archive", ref], cwd=upstream.path, capture_output=True, check=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def _add_patch(settings: Settings, name: str, text: str) -> None:
    directory = settings.patches_dir / PACKAGE
    (directory / name).write_text(text)
    series = directory / "series"
    series.write_text(series.read_text() + f"{name}\n")


def test_check_reports_every_status_with_the_hunk(settings: Settings, upstream: Upstream) -> None:
    report = patch.check(settings, resolve(settings, PACKAGE), list(EXPECTED_STATUS))
    assert {h.ref: h.status for h in report} == EXPECTED_STATUS
    by_ref = {h.ref: h for h in report}
    assert all(h.patch == FIX_PATCH_NAME for h in report)
    assert by_ref["v1.0"].commit == upstream.git("rev-parse", "v1.0^{commit}")
    assert "offset +5" in by_ref["v1.1"].detail
    assert "hunk #1" in by_ref["v1.2"].detail and "fuzz 1" in by_ref["v1.2"].detail
    assert "hunk #2" in by_ref["v1.3"].detail and "FAILED" in by_ref["v1.3"].detail
    assert f"{TOUCHED}: file not found" in by_ref["v2.0"].detail


def test_check_applies_patches_on_top_of_the_ones_before(settings: Settings, upstream: Upstream) -> None:
    # A second patch whose context only exists once the fix is in: it must "apply" after it.
    fixed = upstream.git("show", f"{FIX_BRANCH}:{TOUCHED}").splitlines()
    index = fixed.index("      wait_writable dst;")
    text = (
        "Subject: [PATCH] Log the wait\n\n"
        f"diff --git a/{TOUCHED} b/{TOUCHED}\n--- a/{TOUCHED}\n+++ b/{TOUCHED}\n"
        f"@@ -{index},3 +{index},4 @@\n"
        f' {fixed[index - 1]}\n {fixed[index]}\n+      log "waiting";\n {fixed[index + 1]}\n'
    )
    _add_patch(settings, "demo-1.0-log-the-wait.XCP-ng.patch", text)
    report = patch.check(settings, resolve(settings, PACKAGE), ["v1.0", "v1.2"])
    assert [(h.ref, h.status) for h in report] == [
        ("v1.0", hunks.APPLIES),
        ("v1.0", hunks.APPLIES),
        ("v1.2", hunks.FUZZ),
        ("v1.2", hunks.OFFSET),  # on top of the fuzzed fix, shifted by v1.1's banner
    ]


def test_apply_gives_the_tree_of_the_fix_commit(tmp_path: Path, settings: Settings, upstream: Upstream) -> None:
    source = _tree(upstream, "v1.0", tmp_path / "demo-1.0")
    applied = patch.apply_series(settings, resolve(settings, PACKAGE), source)
    assert applied == [FIX_PATCH_NAME]
    assert _snapshot(source) == _snapshot(_tree(upstream, FIX_BRANCH, tmp_path / "expected"))
    assert not [p for p in tmp_path.iterdir() if "patching" in p.name]


def test_failing_apply_names_patch_file_hunk_and_leaves_the_tree_as_it_was(
    tmp_path: Path, settings: Settings, upstream: Upstream
) -> None:
    source = _tree(upstream, "v1.3", tmp_path / "demo")
    before = _snapshot(source)
    with pytest.raises(PatchError) as info:
        patch.apply_series(settings, resolve(settings, PACKAGE), source)
    message = info.value.message
    assert FIX_PATCH_NAME in message and TOUCHED in message and "hunk #1" in message
    assert _snapshot(source) == before
    assert not [p for p in tmp_path.iterdir() if "patching" in p.name]


def test_a_later_patch_failing_undoes_the_earlier_ones(tmp_path: Path, settings: Settings, upstream: Upstream) -> None:
    # Patch 1 applies, patch 2 cannot: nothing of patch 1 may remain.
    _add_patch(
        settings,
        "demo-1.0-broken.XCP-ng.patch",
        "Subject: [PATCH] Broken\n\ndiff --git a/README b/README\n--- a/README\n+++ b/README\n"
        "@@ -1 +1 @@\n-this line is not in README\n+x\n",
    )
    source = _tree(upstream, "v1.0", tmp_path / "demo")
    before = _snapshot(source)
    with pytest.raises(PatchError) as info:
        patch.apply_series(settings, resolve(settings, PACKAGE), source)
    assert "patch 2/2 demo-1.0-broken.XCP-ng.patch" in info.value.message
    assert "README hunk #1" in info.value.message
    assert _snapshot(source) == before


def test_applying_twice_says_it_looks_already_applied(tmp_path: Path, settings: Settings, upstream: Upstream) -> None:
    source = _tree(upstream, "v1.0", tmp_path / "demo")
    pkg = resolve(settings, PACKAGE)
    patch.apply_series(settings, pkg, source)
    with pytest.raises(PatchError, match="already applied"):
        patch.apply_series(settings, pkg, source)


def test_apply_to_a_git_checkout_refuses_uncommitted_changes(
    tmp_path: Path, settings: Settings, upstream: Upstream
) -> None:
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", "-b", "v1.0", str(upstream.path), str(checkout)], check=True)
    (checkout / TOUCHED).write_text("edited\n")
    pkg = resolve(settings, PACKAGE)
    with pytest.raises(SourceError, match="uncommitted changes"):
        patch.apply_series(settings, pkg, checkout)
    subprocess.run(["git", "checkout", "-q", "--", TOUCHED], cwd=checkout, check=True)
    assert patch.apply_series(settings, pkg, checkout) == [FIX_PATCH_NAME]
    assert (checkout / ".git").is_dir()
    assert "wait_writable dst" in (checkout / TOUCHED).read_text()


def test_target_without_series_applies_nothing(tmp_path: Path, settings: Settings, upstream: Upstream) -> None:
    source = _tree(upstream, "v1.1", tmp_path / "demo")
    before = _snapshot(source)
    assert patch.apply_series(settings, resolve(settings, PACKAGE, "next"), source) == []
    assert _snapshot(source) == before


@pytest.mark.parametrize(
    ("series", "message"),
    [
        pytest.param("../../etc/passwd\n", "is not a patch file name", id="path"),
        pytest.param("missing.patch\n", "does not exist", id="missing"),
        pytest.param(f"{FIX_PATCH_NAME}\n{FIX_PATCH_NAME}\n", "listed twice", id="twice"),
    ],
)
def test_malformed_series_is_a_patch_error(
    tmp_path: Path, settings: Settings, upstream: Upstream, series: str, message: str
) -> None:
    (settings.patches_dir / PACKAGE / "series").write_text(series)
    source = _tree(upstream, "v1.0", tmp_path / "demo")
    with pytest.raises(PatchError, match=message):
        patch.apply_series(settings, resolve(settings, PACKAGE), source)


def test_a_file_that_is_not_a_patch_is_refused_before_anything_runs(
    tmp_path: Path, settings: Settings, upstream: Upstream
) -> None:
    (settings.patches_dir / PACKAGE / FIX_PATCH_NAME).write_text("hello\n")
    with pytest.raises(PatchError, match="is not a patch"):
        patch.check(settings, resolve(settings, PACKAGE), ["v1.0"])


def _branch_checkout(tmp_path: Path, upstream: Upstream) -> Path:
    """A clone with branch ``xcpng`` on v1.0: the fix, then a rename with an edit, as commits."""
    checkout = tmp_path / "checkout"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.invalid",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.invalid",
        "GIT_AUTHOR_DATE": "2018-07-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2018-07-01T00:00:00Z",
    }

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=checkout, env=env, check=True, capture_output=True)

    subprocess.run(["git", "clone", "-q", str(upstream.path), str(checkout)], check=True)
    git("checkout", "-q", "-b", "xcpng", "v1.0")
    git("cherry-pick", f"origin/{FIX_BRANCH}")
    git("mv", "README", "README.md")
    with (checkout / "README.md").open("a") as readme:
        readme.write("Built for XCP-ng.\n")
    git("add", "-A")
    git("commit", "-q", "-m", "Rename README to README.md for XCP-ng")
    return checkout


def test_refresh_round_trip_and_stable_names(tmp_path: Path, settings: Settings, upstream: Upstream) -> None:
    checkout = _branch_checkout(tmp_path, upstream)
    pkg = find_package(settings.specs_dir, PACKAGE)
    stale = settings.patches_dir / PACKAGE / "demo-1.0-stale.XCP-ng.patch"
    _add_patch(settings, stale.name, (settings.patches_dir / PACKAGE / FIX_PATCH_NAME).read_text())

    result = patch.refresh(settings, pkg, "xcpng", checkout)
    new_name = "demo-1.0-rename-readme-to-readme-md-for-xcp-ng.XCP-ng.patch"
    assert result.series == [FIX_PATCH_NAME, new_name]  # the fix kept its name (same subject)
    assert result.removed == [stale.name] and not stale.exists()
    series_text = (settings.patches_dir / PACKAGE / "series").read_text()
    assert series_text == f"# applied in this order\n{FIX_PATCH_NAME}\n{new_name}\n"  # header comment kept
    rename_patch = (settings.patches_dir / PACKAGE / new_name).read_text()
    assert "rename from README" in rename_patch and "0000000000000000000000000000000000000000" in rename_patch

    # Refresh then apply gives the branch's tree.
    source = _tree(upstream, "v1.0", tmp_path / "demo-1.0")
    assert patch.apply_series(settings, resolve(settings, PACKAGE), source) == result.series
    assert _snapshot(source) == _snapshot(checkout)

    # Refreshing again changes no byte.
    before = _snapshot(settings.patches_dir)
    patch.refresh(settings, pkg, "xcpng", checkout)
    assert _snapshot(settings.patches_dir) == before


def test_refresh_refuses_dirty_checkout_unknown_branch_and_empty_branch(
    tmp_path: Path, settings: Settings, upstream: Upstream
) -> None:
    checkout = _branch_checkout(tmp_path, upstream)
    pkg = find_package(settings.specs_dir, PACKAGE)
    before = _snapshot(settings.patches_dir)
    with pytest.raises(SourceError, match="unknown ref `nope`"):
        patch.refresh(settings, pkg, "nope", checkout)
    with pytest.raises(PatchError, match=r"no commits on top of v1\.0"):
        patch.refresh(settings, pkg, "v1.0", checkout)
    (checkout / "Makefile").write_text("dirty\n")
    with pytest.raises(SourceError, match="uncommitted changes"):
        patch.refresh(settings, pkg, "xcpng", checkout)
    assert _snapshot(settings.patches_dir) == before


def _cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    monkeypatch.setenv("XCPBUILD_PROJECT", str(settings.project_root))
    monkeypatch.setenv("XCPBUILD_CACHE", str(settings.cache_dir))
    monkeypatch.setenv("XCPBUILD_WORK", str(settings.work_dir))
    return app.main(["-q", *argv])


def test_cli_check_json_and_exit_status(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(monkeypatch, settings, "patch", "check", PACKAGE, "--json") == 0  # default: the pinned ref
    assert [h["status"] for h in json.loads(capsys.readouterr().out)] == [hunks.APPLIES]
    code = _cli(monkeypatch, settings, "patch", "check", PACKAGE, "--ref", "v1.1", "--ref", "v1.3", "--json")
    assert code == PatchError.exit_code
    rows = json.loads(capsys.readouterr().out)
    assert [(r["ref"], r["status"]) for r in rows] == [("v1.1", hunks.OFFSET), ("v1.3", hunks.CONFLICTS)]
    assert set(rows[0]) == {"ref", "commit", "patch", "status", "detail"}
    assert _cli(monkeypatch, settings, "patch", "check", PACKAGE, "--ref", "v1.1") == 0  # offset builds
    assert "applies with offset" in capsys.readouterr().out
    assert _cli(monkeypatch, settings, "patch", "check", PACKAGE, "--ref", "v1.4") == PatchError.exit_code
    assert "already upstream" in capsys.readouterr().out


def test_cli_bad_inputs_are_one_line_with_hint_and_exit_code(
    tmp_path: Path,
    settings: Settings,
    upstream: Upstream,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = _tree(upstream, "v1.3", tmp_path / "demo")
    cases: list[tuple[tuple[str, ...], int, str]] = [
        (("patch", "check", "nope"), ConfigError.exit_code, "unknown package `nope`"),
        (("patch", "check", PACKAGE, "--ref", "v9"), SourceError.exit_code, "unknown ref `v9`"),
        (("patch", "apply", PACKAGE, "--source", str(source)), PatchError.exit_code, "does not apply"),
        (("patch", "apply", PACKAGE, "--source", str(tmp_path / "no")), SourceError.exit_code, "does not exist"),
        (
            ("patch", "check", PACKAGE, "--upstream", f"file://{tmp_path}/gone.git"),
            SourceError.exit_code,
            "cannot clone",
        ),
    ]
    for argv, code, message in cases:
        assert _cli(monkeypatch, settings, *argv) == code, argv
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("✗", " "))]
        assert len(err) == 1 and message in err[0], err
    (settings.patches_dir / PACKAGE / "series").write_text("a b.patch\n")
    assert _cli(monkeypatch, settings, "patch", "apply", PACKAGE, "--source", str(source)) == PatchError.exit_code
    assert "series:1" in capsys.readouterr().err


def test_the_vhd_tool_patch_in_the_project_is_well_formed() -> None:
    from tests.conftest import PROJECT_ROOT

    directory = PROJECT_ROOT / "patches" / "vhd-tool"
    names = [line for line in (directory / "series").read_text().splitlines() if line and not line.startswith("#")]
    assert names == ["vhd-tool-0.20.0-wait-for-writable-socket.XCP-ng.patch"]
    text = (directory / names[0]).read_text()
    parsed = hunks.parse_patch(text)
    assert [f.path for f in parsed.files] == ["src/channels.ml"]
    assert text.startswith("From 0000000000000000000000000000000000000000 ")
    added = [line for line in text.splitlines() if line.startswith("+") and not line.startswith("+++")]
    removed = [line for line in text.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert any("Lwt_unix.wait_write to_fd" in line for line in added)
    assert any("Lwt_unix.wait_read from_fd" in line for line in added)
    assert any("Lwt_unix.sleep 0.1" in line for line in removed)
    assert not any("Lwt_unix.sleep" in line for line in added)


def test_refresh_keeps_files_another_target_still_lists(tmp_path: Path, settings: Settings, upstream: Upstream) -> None:
    checkout = _branch_checkout(tmp_path, upstream)
    directory = settings.patches_dir / PACKAGE
    shared = directory / "demo-1.0-only-for-other.XCP-ng.patch"
    _add_patch(
        settings, shared.name, (directory / FIX_PATCH_NAME).read_text().replace("Subject: [PATCH] ", "Subject: X ")
    )
    (directory / "series-other").write_text(f"{shared.name}\n")
    toml = settings.specs_dir / f"{PACKAGE}.toml"
    toml.write_text(toml.read_text() + '\n[targets.other]\nseries = "series-other"\n')
    result = patch.refresh(settings, find_package(settings.specs_dir, PACKAGE), "xcpng", checkout)
    assert shared.name not in result.series and result.removed == []
    assert shared.exists()
