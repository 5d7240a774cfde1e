"""Where xcpbuild finds its project files and keeps its caches.

Precedence, lowest first: built-in defaults < ``XCPBUILD_*`` environment < CLI
flags (the CLI passes its overrides to ``load_settings``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.errors import ConfigError

# Directories a project root holds; the checkout this module lives in is one.
_PROJECT_MARKERS = ("specs", "containers", "patches")


@dataclass(frozen=True)
class Settings:
    """Resolved locations used by every pipeline step."""

    project_root: Path
    cache_dir: Path
    work_dir: Path
    # Every XCPBUILD_* variable as it was when the settings were made: mirror URLs, the XCP-ng
    # key, local base images. Verbs read them here, never from the environment.
    variables: tuple[tuple[str, str], ...] = ()

    def variable(self, name: str) -> str:
        return dict(self.variables).get(name, "")

    @property
    def specs_dir(self) -> Path:
        return self.project_root / "specs"

    @property
    def patches_dir(self) -> Path:
        return self.project_root / "patches"

    @property
    def containers_dir(self) -> Path:
        return self.project_root / "containers"


def _is_project(path: Path) -> bool:
    return all((path / marker).is_dir() for marker in _PROJECT_MARKERS)


def find_project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding specs/, containers/ and patches/.

    Falls back to the checkout this package was installed from, so an editable
    install works from any directory.
    """
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if _is_project(candidate):
            return candidate
    source_checkout = Path(__file__).resolve().parent.parent
    if _is_project(source_checkout):
        return source_checkout
    raise ConfigError(
        f"no xcpbuild project found at or above {here}",
        hint="run from an xcpbuild checkout, or pass --project DIR / set XCPBUILD_PROJECT",
    )


def default_cache_dir() -> Path:
    """The cache folder when none is given: ``XCPBUILD_CACHE``, else the XDG cache's ``xcpbuild/``.

    Needs no project, so verbs that work without one still have a place for their temporary files.
    """
    env_cache = os.environ.get("XCPBUILD_CACHE")
    if env_cache:
        return Path(env_cache).resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return ((Path(xdg) if xdg else Path.home() / ".cache") / "xcpbuild").resolve()


def load_settings(
    project: Path | None = None,
    cache_dir: Path | None = None,
    work_dir: Path | None = None,
) -> Settings:
    """Resolve settings from arguments, then ``XCPBUILD_*`` variables, then defaults."""
    env_project = os.environ.get("XCPBUILD_PROJECT")
    if project is None and env_project:
        project = Path(env_project)
    if project is not None:
        project = project.resolve()
        if not _is_project(project):
            raise ConfigError(
                f"{project} is not an xcpbuild project (it needs specs/, containers/ and patches/)",
                hint="point --project or XCPBUILD_PROJECT at an xcpbuild checkout",
            )
        root = project
    else:
        root = find_project_root()

    if cache_dir is None:
        cache_dir = default_cache_dir()
    if work_dir is None:
        env_work = os.environ.get("XCPBUILD_WORK")
        work_dir = Path(env_work) if env_work else root / "_work"
    variables = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("XCPBUILD_")))
    return Settings(project_root=root, cache_dir=cache_dir.resolve(), work_dir=work_dir.resolve(), variables=variables)
