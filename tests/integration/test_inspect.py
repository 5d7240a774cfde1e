"""inspect against real rpmbuild output: headers of RPMs and SRPMs, and what changed between two builds."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.integration.build_fixtures import VHD_PATCH, build_package, make_vhd_tool_upstream
from xcpbuild.cli.app import main
from xcpbuild.config import Settings
from xcpbuild.pipeline.build import build, inspect


def _rpm(result: build.BuildResult, kind: str) -> Path:
    return next(result.folder / a.path for a in result.artifacts if a.kind == kind)


def test_changed_release_and_file_show_up_against_the_old_rpm(project: Settings, capsys) -> None:  # type: ignore[no-untyped-def]
    old = _rpm(build_package(project, "xcp-export-server", "local"), "rpm")
    definition = project.specs_dir / "xcp-export-server.toml"
    definition.write_text(definition.read_text().replace('base_release = "1"', 'base_release = "2"'))
    module = project.project_root / "xcpbuild" / "log.py"
    module.write_text(module.read_text() + "\n# changed for the test\n")
    new = _rpm(build_package(project, "xcp-export-server", "local"), "rpm")

    changes = inspect.compare(inspect.read([old])[0], inspect.read([new])[0])
    assert changes.evr == ("0.1.0-1.xcpng8.3", "0.1.0-2.xcpng8.3")
    changed_paths = [c.split(":")[0] for c in changes.files_changed]
    assert changed_paths == ["/usr/lib/python3/dist-packages/xcpbuild/log.py"]
    assert not changes.files_added and not changes.files_removed

    assert main(["inspect", str(new), "--against", str(old), "--json"]) == 0
    (reported,) = json.loads(capsys.readouterr().out)
    assert reported["empty"] is False and reported["evr"] == ["0.1.0-1.xcpng8.3", "0.1.0-2.xcpng8.3"]
    assert main(["inspect", str(old), "--against", str(old.with_name("missing.rpm"))]) == 11


def test_srpm_patches_are_listed_and_a_dropped_patch_is_reported(project: Settings, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    upstream = str(make_vhd_tool_upstream(tmp_path / "vhd-tool"))
    patched = _rpm(build_package(project, "vhd-tool", "local", upstream=upstream, ref="main", stage="srpm"), "srpm")
    (project.patches_dir / "vhd-tool" / "series").write_text("")
    plain = _rpm(build_package(project, "vhd-tool", "local", upstream=upstream, ref="main", stage="srpm"), "srpm")

    assert main(["inspect", str(patched)]) == 0
    shown = capsys.readouterr().out
    assert re.search(rf"patches:\s+{re.escape(VHD_PATCH.name)}", shown)
    assert "LGPL+linking exception" in shown and "vhd-tool.spec" in shown
    changes = inspect.compare(inspect.read([patched])[0], inspect.read([plain])[0])
    assert changes.patches_removed == (VHD_PATCH.name,) and changes.evr is None
    assert f"{VHD_PATCH.name}: " not in " ".join(changes.files_changed)
    assert VHD_PATCH.name in changes.files_removed and "vhd-tool.spec" in " ".join(changes.files_changed)
