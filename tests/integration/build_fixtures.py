"""Shared fixtures for image, build and inspect tests: one local image per run, throwaway projects.

The local image is built with the machine's real cache (XCPBUILD_CACHE or
~/.cache/xcpbuild), so the base is bootstrapped at most once per machine; projects are
copies of this checkout's specs/, patches/ and containers/ in a temp dir (the
same container files give the same image tag), each with its own work dir.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT, need, need_tool
from xcpbuild.config import Settings, load_settings
from xcpbuild.errors import ToolMissingError
from xcpbuild.pipeline.build import build, image
from xcpbuild.pipeline.sources.package import resolve

VHD_PATCH = PROJECT_ROOT / "patches" / "vhd-tool" / "vhd-tool-0.20.0-wait-for-writable-socket.XCP-ng.patch"


def real_cache() -> Path:
    return load_settings(project=PROJECT_ROOT).cache_dir


def copy_project(dest: Path) -> Path:
    for name in ("specs", "patches", "containers"):
        shutil.copytree(PROJECT_ROOT / name, dest / name)
    # The export server package is made from these files of the project itself.
    shutil.copytree(PROJECT_ROOT / "xcpbuild", dest / "xcpbuild", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def project_settings(root: Path, work: Path) -> Settings:
    return Settings(project_root=root, cache_dir=real_cache(), work_dir=work)


@pytest.fixture(scope="session")
def local_image(docker_client) -> image.ImageResult:  # type: ignore[no-untyped-def]
    """The local target's image, built from nothing (mmdebstrap) the first time on a machine."""
    need_tool("mmdebstrap")
    need(Path("/etc/apt").is_dir(), "an apt configuration naming a Debian mirror")
    try:
        return image.build(load_settings(project=PROJECT_ROOT), "local", client=docker_client)
    except ToolMissingError as exc:  # mmdebstrap needs root the first time on a machine
        need(False, exc.message)
        raise


@pytest.fixture
def project(tmp_path: Path, local_image: image.ImageResult) -> Settings:
    """A throwaway copy of the project with its own work dir (shares the image and the cache)."""
    root = copy_project(tmp_path / "project")
    return project_settings(root, tmp_path / "work")


def _git(cwd: Path, *args: str) -> None:
    env = {
        "GIT_AUTHOR_NAME": "Fixture",
        "GIT_AUTHOR_EMAIL": "fixture@example.invalid",
        "GIT_COMMITTER_NAME": "Fixture",
        "GIT_COMMITTER_EMAIL": "fixture@example.invalid",
        "GIT_AUTHOR_DATE": "2018-06-01T12:00:00+00:00",
        "GIT_COMMITTER_DATE": "2018-06-01T12:00:00+00:00",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def preimage(patch_text: str) -> dict[str, str]:
    """For each file a patch touches, text its hunks apply to (context and removed lines, hunks in order)."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_hunk = False
    for line in patch_text.splitlines():
        if line.startswith("--- "):
            in_hunk = False
            continue
        if line.startswith("+++ b/"):
            current = files.setdefault(line[6:], [])
            continue
        if line.startswith("@@"):
            in_hunk = True
            if current:
                current.append("(* between hunks *)")
            continue
        if line.startswith(("diff --git", "index ")) or line == "-- ":
            in_hunk = False
            continue
        if in_hunk and current is not None and line[:1] in (" ", "-"):
            current.append(line[1:])
    return {name: "\n".join(lines) + "\n" for name, lines in files.items()}


def make_vhd_tool_upstream(root: Path, *, broken: bool = False) -> Path:
    """A stand-in vhd-tool upstream whose src/channels.ml is what the project's patch applies to.

    With ``broken`` a line the patch removes is reworded, so the patch cannot apply.
    """
    root.mkdir(parents=True)
    _git(root, "init", "-q", "-b", "main")
    for name, text in preimage(VHD_PATCH.read_text()).items():
        if broken:
            text = re.sub(r"max_attempts = 20", "max_attempts = 50", text)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "cli").mkdir(exist_ok=True)
    (root / "cli" / "sparse_dd.conf").write_text("# sparse_dd defaults (fixture)\n")
    (root / "Makefile").write_text("all:\n\t@echo the real build needs XCP-ng's OCaml packages\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "vhd-tool stand-in")
    return root


def build_package(settings: Settings, name: str, target: str = "local", **options: Any) -> build.BuildResult:
    """Resolve ``name`` (a package of specs/ or a package repository) and build it with these options."""
    return build.build(settings, resolve(settings, name, target), build.BuildOptions(**options))
