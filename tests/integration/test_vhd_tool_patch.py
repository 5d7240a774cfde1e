"""Opt-in: the real vhd-tool patch against a real vhd-tool clone.

Runs only when XCPBUILD_VHD_TOOL_UPSTREAM points at a clone (or bare mirror) of
xapi-project/vhd-tool; without it the tests are skipped, also in CI, because no
public git host is reachable from the build machines.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from xcpbuild.config import Settings
from xcpbuild.model.package import find_package
from xcpbuild.pipeline.sources import hunks, patch, source
from xcpbuild.pipeline.sources.package import resolve

UPSTREAM = os.environ.get("XCPBUILD_VHD_TOOL_UPSTREAM", "")
PATCH = "vhd-tool-0.20.0-wait-for-writable-socket.XCP-ng.patch"

pytestmark = [
    pytest.mark.optin,
    pytest.mark.skipif(not UPSTREAM, reason="set XCPBUILD_VHD_TOOL_UPSTREAM to a vhd-tool clone to run"),
]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    work = tmp_path_factory.mktemp("vhd-tool")
    return Settings(project_root=PROJECT_ROOT, cache_dir=work / "cache", work_dir=work / "work")


def test_pinned_tarball_patches_exactly_and_the_fix_is_in(settings: Settings, tmp_path: Path) -> None:
    pkg = find_package(settings.specs_dir, "vhd-tool")
    fetched = source.fetch(settings, pkg, target="xcp-ng-7.5", upstream=UPSTREAM)
    assert fetched.sha256 == pkg.pin("xcp-ng-7.5").sha256  # fetch also refuses a mismatch
    with tarfile.open(fetched.tarball) as tar:
        tar.extractall(tmp_path, filter="data")
    tree = tmp_path / "vhd-tool-0.20.0"
    original = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}

    assert patch.apply_series(settings, resolve(settings, "vhd-tool", "xcp-ng-7.5"), tree) == [PATCH]
    channels = (tree / "src" / "channels.ml").read_text()
    assert "Lwt_unix.wait_write to_fd" in channels and "Lwt_unix.wait_read from_fd" in channels
    assert "Lwt_unix.sleep" not in channels and "max_attempts" not in channels
    changed = [p for p, data in original.items() if p.read_bytes() != data]
    assert changed == [tree / "src" / "channels.ml"]


def test_patch_check_across_upstream_releases(settings: Settings) -> None:
    report = {
        h.ref: h
        for h in patch.check(
            settings, resolve(settings, "vhd-tool", "local"), ["v0.20.0", "v0.22.0", "v0.43.0"], upstream=UPSTREAM
        )
    }
    assert report["v0.20.0"].status == hunks.APPLIES
    assert report["v0.22.0"].status == hunks.APPLIES  # channels.ml unchanged until v0.23.0
    # 0.43.0 has upstream's own rewrite of the copy loop: our 0.20.0 patch does not fit there.
    assert report["v0.43.0"].status == hunks.CONFLICTS
    assert "src/channels.ml hunk #1" in report["v0.43.0"].detail


def test_xcp_ng_8_2_builds_upstream_unpatched(settings: Settings, tmp_path: Path) -> None:
    pkg = find_package(settings.specs_dir, "vhd-tool")
    fetched = source.fetch(settings, pkg, target="xcp-ng-8.2", upstream=UPSTREAM)
    assert fetched.version == "0.43.0" and fetched.sha256 == pkg.pin("xcp-ng-8.2").sha256
    assert patch.apply_series(settings, resolve(settings, "vhd-tool", "xcp-ng-8.2"), tmp_path) == []
