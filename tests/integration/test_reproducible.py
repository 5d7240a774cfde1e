"""The reproducibility check with real container builds: our packages come out identical, a package that
embeds its build time is reported as different, naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import need_tool
from xcpbuild.config import Settings
from xcpbuild.pipeline.build import build, reproducible
from xcpbuild.pipeline.sources.package import resolve


def test_export_server_and_platform_packages_are_reproducible(project: Settings) -> None:
    need_tool("rpm")
    for name in ("xcp-export-server", "xcpbuild-local-platform"):
        found = reproducible.check(project, resolve(project, name, "local"), build.BuildOptions(), pause=1.1)
        assert found.identical, [(f.name, f.differences[:5]) for f in found.files]
        assert {f.name.rsplit(".", 2)[-2] for f in found.files} == {"src", "noarch"}
        assert found.folders[0] != found.folders[1], "two real builds, not one reused"


def test_a_package_embedding_its_build_time_is_reported_naming_the_file(project: Settings) -> None:
    need_tool("rpm")
    specs = project.specs_dir
    (specs / "stamp-fixture").mkdir()
    shutil.copy(specs / "xcpbuild-local-platform" / "PLATFORM", specs / "stamp-fixture" / "PLATFORM")
    definition = (specs / "xcpbuild-local-platform.toml").read_text()
    definition = definition.replace("xcpbuild-local-platform", "stamp-fixture")
    (specs / "stamp-fixture.toml").write_text(definition)
    template = (specs / "xcpbuild-local-platform.spec.j2").read_text()
    template = template.replace("xcpbuild-local-platform", "stamp-fixture").replace(
        "%files", "date +%s%N > %{buildroot}%{_datadir}/stamp-fixture/BUILT\n\n%files"
    )
    (specs / "stamp-fixture.spec.j2").write_text(template)
    found = reproducible.check(project, resolve(project, "stamp-fixture", "local"), build.BuildOptions(), pause=1.1)
    assert not found.identical
    (binary,) = [f for f in found.files if f.name.endswith(".noarch.rpm")]
    assert not binary.identical
    assert any(line.startswith("file /usr/share/stamp-fixture/BUILT: digest") for line in binary.differences), binary
    assert not any("PLATFORM" in line for line in binary.differences), "only the stamped file differs"
    if shutil.which("diffoscope"):
        assert binary.diffoscope is not None and "BUILT" in Path(binary.diffoscope).read_text()
    (source,) = [f for f in found.files if f.name.endswith(".src.rpm")]
    assert source.identical, source.differences
