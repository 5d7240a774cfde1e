"""Our vhd-tool releases upgrade what each XCP-ng release shipped, in rpm's own version order.

The EVR is what rpm itself makes of the rendered spec (``rpmspec -q`` with the target's
%{dist}), and the comparison is rpm's (``rpm.ver`` in rpm's embedded Lua), so neither the
release rule nor the dist tag is judged by our own code.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import need_tool
from xcpbuild.config import load_settings
from xcpbuild.model.target import find_target
from xcpbuild.pipeline.build import spec
from xcpbuild.pipeline.sources.package import resolve

# What each XCP-ng release shipped last (docs: xcp-ng-ecosystem.md, "vhd-tool as it really shipped").
SHIPPED = {
    "xcp-ng-7.5": "0.20.0-4.3.xcp.el7.centos",  # 2018-08-30, CentOS's dist on 7.5
    "xcp-ng-8.2": "0.43.0-11.1.xcpng8.2",
}


def _evr(spec_file: Path, dist: str) -> str:
    done = subprocess.run(
        ["rpmspec", "-q", "--srpm", "--qf", "%{EVR}\\n", "--define", f"dist {dist}", str(spec_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _newer(ours: str, theirs: str) -> bool:
    done = subprocess.run(
        ["rpm", "--eval", f'%{{lua: print(rpm.ver("{ours}") > rpm.ver("{theirs}"))}}'],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip() == "true"


@pytest.mark.parametrize("target", sorted(SHIPPED))
def test_our_release_sorts_above_what_the_xcp_ng_release_shipped(target: str, tmp_path: Path) -> None:
    need_tool("rpm", "rpmspec")
    settings = load_settings()
    rendered = spec.render(settings, resolve(settings, "vhd-tool", target))
    spec_file = tmp_path / rendered.filename
    spec_file.write_text(rendered.text)
    ours = _evr(spec_file, find_target(settings.containers_dir, target).dist_macro)
    assert _newer(ours, SHIPPED[target]), f"{ours} does not upgrade {SHIPPED[target]}"
    assert not _newer(SHIPPED[target], ours)
    # The comparison really discriminates: the 2018 fix itself does not upgrade the last 7.5 release.
    assert not _newer("0.20.0-4.2.xcp.el7.centos", SHIPPED["xcp-ng-7.5"])


def test_the_7_5_build_carries_the_dist_that_shipped(tmp_path: Path) -> None:
    need_tool("rpm", "rpmspec")
    settings = load_settings()
    rendered = spec.render(settings, resolve(settings, "vhd-tool", "xcp-ng-7.5"))
    spec_file = tmp_path / rendered.filename
    spec_file.write_text(rendered.text)
    assert _evr(spec_file, find_target(settings.containers_dir, "xcp-ng-7.5").dist_macro).endswith(".xcp.el7.centos")
