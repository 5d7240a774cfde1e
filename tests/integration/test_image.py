"""Build environments against a real engine: the local image from mmdebstrap, reused until its inputs change."""

from __future__ import annotations

from pathlib import Path

from tests.integration.build_fixtures import copy_project, project_settings
from xcpbuild.adapters import container as ctr
from xcpbuild.pipeline.build import image


def test_local_image_has_rpm_tools_el_macros_and_a_non_root_builder(docker_client, local_image) -> None:  # type: ignore[no-untyped-def]
    assert local_image.tag.startswith("xcpbuild-local:")
    assert docker_client.sdk.images.get(local_image.tag).labels[image.TARGET_LABEL] == "local"
    probe = (
        "id -u; rpm --eval '%{_unitdir} %{python3_sitelib} %{__python3} %{dist}'; "
        "command -v rpmbuild rpmspec patch python3 >/dev/null && echo tools; ls /sys/class/net"
    )
    with ctr.BuildContainer(docker_client, ctr.ContainerOptions(image=local_image.tag, role="test")) as box:
        lines = box.exec(["sh", "-c", probe]).output.split("\n")
    assert lines[0] == "1000"
    assert lines[1] == "/usr/lib/systemd/system /usr/lib/python3/dist-packages /usr/bin/python3 .xcpng8.3"
    assert lines[2] == "tools"
    assert lines[3] == "lo"  # network none


def test_image_is_reused_until_its_context_changes(docker_client, local_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = project_settings(copy_project(tmp_path / "project"), tmp_path / "work")
    # Same files -> same tag -> the image made by the session fixture, not a new build.
    same = image.build(settings, "local", client=docker_client)
    assert (same.reused, same.tag, same.image_id) == (True, local_image.tag, local_image.image_id)

    macros = settings.containers_dir / "local" / "macros.xcpbuild"
    macros.write_text(macros.read_text() + "%_xcpbuild_test_marker 42\n")
    changed = image.build(settings, "local", client=docker_client)
    try:
        assert changed.reused is False and changed.tag != local_image.tag
        assert changed.base == local_image.base  # the bootstrapped base is shared, not remade
        again = image.build(settings, "local", client=docker_client)
        assert (again.reused, again.image_id) == (True, changed.image_id)
        with ctr.BuildContainer(docker_client, ctr.ContainerOptions(image=changed.tag, role="test")) as box:
            assert box.exec(["rpm", "--eval", "%{_xcpbuild_test_marker}"]).output.strip() == "42"
        listed = {row.tag: row.current for row in image.list_images(settings, client=docker_client)}
        assert listed[changed.tag] is True and listed[local_image.tag] is False
    finally:
        docker_client.sdk.images.remove(changed.tag, force=True)
