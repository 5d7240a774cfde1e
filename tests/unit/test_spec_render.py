"""Spec rendering: Patch1000+ from the series, XCP-ng release rule with the target's dist, changelog."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from xcpbuild.cli.app import main
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError
from xcpbuild.pipeline.build import spec
from xcpbuild.pipeline.sources.package import resolve

PATCH = "vhd-tool-0.20.0-wait-for-writable-socket.XCP-ng.patch"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    root = tmp_path / "project"
    for name in ("specs", "patches", "containers"):
        shutil.copytree(PROJECT_ROOT / name, root / name)
    return Settings(project_root=root, cache_dir=tmp_path / "cache", work_dir=tmp_path / "work")


def _field(text: str, name: str) -> list[str]:
    return re.findall(rf"^{name}:\s*(.+)$", text, re.MULTILINE)


def test_vhd_tool_follows_the_7_5_spec(settings: Settings) -> None:
    rendered = spec.render(settings, resolve(settings, "vhd-tool", "xcp-ng-7.5"))
    text = rendered.text
    assert _field(text, "Name") == ["vhd-tool"] and _field(text, "Version") == ["0.20.0"]
    # 7.x wrote .xcp literally before CentOS's dist: 4.4.xcp.el7.centos, above the 4.3.xcp that shipped.
    assert _field(text, "Release") == ["4.4.xcp%{?dist}"]
    assert _field(text, "License") == ["LGPL+linking exception"]
    assert _field(text, "Source0") == ["vhd-tool-0.20.0.tar.gz"]
    assert _field(text, "Source1") == ["vhd-tool-sparse_dd-conf"]
    assert _field(text, "Patch1000") == [PATCH] and rendered.patches == (PATCH,)
    assert _field(text, "BuildRequires") == [
        "ocaml-camlp4-devel",
        "xs-opam-repo",
        "ocaml-xcp-idl-devel",
        "ocaml-tapctl-devel",
        "openssl-devel",
    ]
    assert "%autosetup -p1" in text and "eval $(opam config env --root=/usr/lib/opamroot)" in text
    assert "%{buildroot}%{_libexecdir}/xapi/get_vhd_vsize" in text and "cli/sparse_dd.conf" in text
    changelog = text.split("%changelog\n", 1)[1]
    # Only what is true of our build: one entry, ours, for this upstream version.
    assert changelog.startswith("* Tue Dec 01 2026 xcpbuild team <xcpbuild@xcp-ng.invalid> - 0.20.0-4.4\n- Wait ")
    assert changelog.count("\n* ") == 0 and "0.43.0" not in changelog and "{{" not in text


def test_8x_targets_use_the_dist_macro_and_their_own_pin(settings: Settings) -> None:
    local = spec.render(settings, resolve(settings, "vhd-tool", "local"))
    assert _field(local.text, "Release") == ["4.4%{?dist}"]
    newer = spec.render(settings, resolve(settings, "vhd-tool", "xcp-ng-8.2"))
    assert (newer.version, newer.release, newer.patches) == ("0.43.0", "11.2", ())
    assert _field(newer.text, "Release") == ["11.2%{?dist}"] and not _field(newer.text, "Patch1000")
    changelog = newer.text.split("%changelog\n", 1)[1]
    assert "- 0.43.0-11.2\n" in changelog and "0.20.0" not in changelog


def test_patches_are_numbered_from_1000_in_series_order(settings: Settings) -> None:
    folder = settings.patches_dir / "vhd-tool"
    (folder / "second.patch").write_text("--- a/x\n+++ b/x\n")
    (folder / "series").write_text(f"{PATCH}\n# a comment\nsecond.patch\n")
    text = spec.render(settings, resolve(settings, "vhd-tool", "local")).text
    assert _field(text, "Patch1000") == [PATCH] and _field(text, "Patch1001") == ["second.patch"]
    assert spec.patch_lines(["a", "b", "c"]).splitlines()[-1] == "Patch1002: c"


def test_export_server_spec_is_noarch_with_a_unit_and_python3(settings: Settings) -> None:
    text = spec.render(settings, resolve(settings, "xcp-export-server", "local")).text
    assert _field(text, "BuildArch") == ["noarch"] and _field(text, "Requires") == ["python3"]
    assert "%{_unitdir}/xcp-export-server.service" in text and "python3 -m xcpbuild.exportserver" not in text
    assert "-m xcpbuild.exportserver" in text and "%{python3_sitelib}/xcpbuild" in text


def test_undefined_template_value_is_a_clear_config_error(settings: Settings) -> None:
    (settings.specs_dir / "vhd-tool.spec.j2").write_text("Name: {{ nmae }}\n")
    with pytest.raises(ConfigError) as info:
        spec.render(settings, resolve(settings, "vhd-tool", "local"))
    assert "nmae" in info.value.message and "patch_lines" in info.value.hint


def test_retired_target_is_refused(settings: Settings) -> None:
    with pytest.raises(ConfigError) as info:
        spec.render(settings, resolve(settings, "vhd-tool", "xcp-ng-8.3"))
    assert "xapi" in info.value.message


def test_cli_prints_or_writes_the_spec(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("XCPBUILD_PROJECT", str(settings.project_root))
    assert main(["spec", "render", "vhd-tool", "--target", "xcp-ng-8.2"]) == 0
    assert "Version: 0.43.0" in capsys.readouterr().out
    out = tmp_path / "vhd-tool.spec"
    assert main(["spec", "render", "vhd-tool", "--target", "local", "-o", str(out)]) == 0
    assert "Patch1000: " in out.read_text() and "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("target", ["xcp-ng-7.5", "xcp-ng-8.2", "xcp-ng-8.3"])
def test_export_server_spec_on_xcp_ng_targets_is_right_for_centos_7(settings: Settings, target: str) -> None:
    text = spec.render(settings, resolve(settings, "xcp-export-server", target)).text
    # CentOS 7 defines %{python3_sitelib} (python3.6) and %{__python3} through python3-devel's macros,
    # %{_unitdir} and the %systemd_* scriptlets through systemd's.
    assert _field(text, "BuildRequires") == ["python3-devel", "systemd"]
    assert _field(text, "Requires") == ["python3"] and "%{?systemd_requires}" in text
    assert "%{python3_sitelib}/xcpbuild\n" in text and "cp -a xcpbuild %{buildroot}%{python3_sitelib}/" in text
    assert "exec %{__python3} -m xcpbuild.exportserver" in text
    assert "install -m 644 %{SOURCE1} %{buildroot}%{_unitdir}/xcp-export-server.service" in text
    assert "%{_unitdir}/xcp-export-server.service\n" in text.split("%files", 1)[1]
    # systemd 219 has no DynamicUser=: the unit runs as a system user made in %pre.
    assert "s/^DynamicUser=yes$/User=xcp-export/" in text
    assert _field(text, "Requires\\(pre\\)") == ["shadow-utils"]
    pre = text.split("%pre\n", 1)[1].split("\n%post", 1)[0]
    assert "useradd -r -g xcp-export" in pre and pre.rstrip().endswith("exit 0")
    unit = (settings.specs_dir / "xcp-export-server" / "xcp-export-server.service").read_text()
    assert "DynamicUser=yes\n" in unit  # what the sed rewrites


def test_export_server_spec_on_local_asks_nothing_debian_cannot_give(settings: Settings) -> None:
    text = spec.render(settings, resolve(settings, "xcp-export-server", "local")).text
    assert not _field(text, "BuildRequires") and "%pre\n" not in text and "DynamicUser" not in text
