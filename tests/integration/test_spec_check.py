"""Rendered specs are validated by rpmspec -P inside the target's image."""

from __future__ import annotations

import pytest

from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError
from xcpbuild.pipeline.build import image, spec
from xcpbuild.pipeline.sources.package import resolve


def test_rendered_specs_parse_in_the_local_image(docker_client, project: Settings, local_image) -> None:  # type: ignore[no-untyped-def]
    for package in ("vhd-tool", "xcp-export-server"):
        expanded = spec.check(
            spec.render(project, resolve(project, package, "local")), local_image.tag, client=docker_client
        )
        # rpmspec -P expands the target's macros: the dist and, for the server, the EL paths.
        assert "Release: " in expanded and ".xcpng8.3" in expanded
    assert "/usr/lib/systemd/system/xcp-export-server.service" in expanded
    assert image.plan(project, "local").tag == local_image.tag


def test_a_broken_spec_is_rejected_with_rpmspec_s_words(docker_client, project: Settings, local_image) -> None:  # type: ignore[no-untyped-def]
    template = project.specs_dir / "xcp-export-server.spec.j2"
    template.write_text(template.read_text().replace("Version:   {{ version }}\n", ""))
    with pytest.raises(ConfigError) as info:
        spec.check(
            spec.render(project, resolve(project, "xcp-export-server", "local")), local_image.tag, client=docker_client
        )
    assert "rpmspec rejects" in info.value.message and "Version" in info.value.message
