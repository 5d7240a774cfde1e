"""Targets: the project's target files load; bad ones are rejected with a clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from xcpbuild.errors import ConfigError
from xcpbuild.model.target import available_targets, find_target, load_target

CONTAINERS = PROJECT_ROOT / "containers"


def test_the_project_targets_load_with_their_dist_tags() -> None:
    assert available_targets(CONTAINERS) == ["local", "xcp-ng-7.5", "xcp-ng-8.2", "xcp-ng-8.3", "xcp-ng-9.0"]
    local = find_target(CONTAINERS, "local")
    assert (local.dist, local.xcpng_release, local.debootstrap_suite, local.binary_builds) == (
        ".xcpng8.3",
        "8.3",
        "bookworm",
        False,
    )
    assert {"rpm", "dnf", "dnf-plugins-core"} <= set(local.debootstrap_include)
    assert local.builddeps == "dnf-builddep" and local.builddeps_only_from_given and local.env is None
    old = find_target(CONTAINERS, "xcp-ng-7.5")
    assert (old.dist, old.release_suffix, old.dist_macro, old.family) == (".el7.centos", ".xcp", ".el7.centos", "el7")
    new = find_target(CONTAINERS, "xcp-ng-8.2")
    assert (new.dist_macro, new.builddeps, new.binary_builds, new.debootstrap_suite) == (
        ".xcpng8.2",
        "yum-builddep",
        True,
        None,
    )
    for name in available_targets(CONTAINERS):
        assert (find_target(CONTAINERS, name).context_dir / "Dockerfile").is_file()


def _write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "demo"
    folder.mkdir(exist_ok=True)
    path = folder / "target.toml"
    path.write_text(text)
    return path


GOOD = 'dist = ".xcpng8.3"\nxcpng_release = "8.3"\nbase_image = "debootstrap:bookworm"\nbuildeps = "none"\n'


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_target(_write(tmp_path, GOOD + "binary_builds = false\n"))
    assert "buildeps" in info.value.message and "builddeps" in info.value.hint


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('dist = "xcpng8.3"\n', "start with a dot"),
        ('xcpng_release = "eight"\n', "look like 8.3"),
        ('builddeps = "apt"\n', "must be one of"),
        ("binary_builds = 1\n", "must be a bool"),
        ('base_image = "centos:7"\nfamily = "el9"\n', "does not exist"),
        ('base_image = "centos:7"\nel_major = 7\n', "no `family`"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, words: str) -> None:
    base = {
        "dist": 'dist = ".xcpng8.3"\n',
        "xcpng_release": 'xcpng_release = "8.3"\n',
        "base_image": 'base_image = "centos:7"\n',
        "builddeps": 'builddeps = "none"\n',
        "binary_builds": "binary_builds = true\n",
    }
    base[text.split(" ", 1)[0]] = text
    with pytest.raises(ConfigError) as info:
        load_target(_write(tmp_path, "".join(base.values())))
    assert words in info.value.message


def test_unknown_target_suggests_a_close_name() -> None:
    with pytest.raises(ConfigError) as info:
        find_target(CONTAINERS, "xcp-ng-8.4")
    assert "xcp-ng-8.3" in info.value.hint or "xcp-ng-8.2" in info.value.hint


def test_every_dockerfile_declares_the_build_args_xcpbuild_passes() -> None:
    import re

    for name in available_targets(CONTAINERS):
        target = find_target(CONTAINERS, name)
        dockerfile = (target.context_dir / "Dockerfile").read_text()
        declared = set(re.findall(r"^ARG\s+(\w+)", dockerfile, re.MULTILINE))
        assert {"BASE", "DIST", "XCPNG_RELEASE", *(arg for arg, _ in target.build_args)} <= declared, name
        assert re.search(r"^FROM \$\{BASE\}$", dockerfile, re.MULTILINE), name
        assert re.search(r"^USER builder$", dockerfile, re.MULTILINE), name  # builds never run as root
        assert "--uid 1000" in dockerfile, name
        if target.env is not None:  # what the family Dockerfile is given as arguments
            assert {"PACKAGES", "EPEL_PACKAGES"} <= declared, name
        # No mirror or registry host is written here: URLs come in as build arguments.
        assert not re.search(r"https?://", dockerfile), name
