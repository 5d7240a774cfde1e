"""A package's probe recipe: the ``[probe]`` table of ``specs/NAME.toml``.

A probe compiles the upstream code a patch changes, together with small files
of our own (shims for missing libraries, a driver that turns the copy path into
an HTTP export endpoint), in a container image made for it, then makes the
endpoint face a stalled client. The recipe says everything that is specific to
a package, so a new package gets a probe without new Python code::

    [probe]
    image = "probe-ocaml"                      # containers/probe-ocaml/Dockerfile
    packages = ["ocaml-nox", "ocaml-findlib"]  # Debian packages added to the image
    upstream_files = ["src/channels.ml"]       # copied from the (patched) source tree
    files = ["probes/vhd-tool/probe_driver.ml"]  # ours, relative to the project root
    compile = ["ocamlfind ocamlopt ... -o probe_driver"]  # shell lines, run in order
    run = "./probe_driver {port} {file} {requests}"
    ready = "probe-ready"                      # the driver prints this once listening
    stall = 30                                 # default client stall, seconds
    file_mib = 64                              # size of the served file
    unpatched_error = 'Unix.Unix_error(Unix.EAGAIN, "sendfile", "")'  # the bug's own words

Every file lands flat in one build directory, so compile lines name them by
their base name. Unknown keys are rejected, as in the rest of the definition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from xcpbuild.errors import ConfigError
from xcpbuild.model.keys import reject_unknown

_KEYS = {
    "image",
    "packages",
    "upstream_files",
    "files",
    "compile",
    "run",
    "ready",
    "stall",
    "file_mib",
    "throttle_kib_s",
    "timeout",
    "unpatched_error",
}
_PLACEHOLDERS = {"port", "file", "requests"}
_DEBIAN_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_IMAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class ProbeRecipe:
    """How to build and run one package's probe."""

    image: str
    packages: tuple[str, ...]
    upstream_files: tuple[str, ...]
    files: tuple[str, ...]
    compile: tuple[str, ...]
    run: str
    ready: str
    stall: float = 10.0
    file_mib: int = 16
    throttle_kib_s: int = 4096
    timeout: float = 600.0
    # What the unpatched code prints when the stall kills it; the main job's verify requires it.
    unpatched_error: str = ""

    def run_argv(self, port: int, file: str, requests: int) -> list[str]:
        """The driver's command line with its placeholders filled in (split on spaces, no shell)."""
        return self.run.format(port=port, file=file, requests=requests).split()

    def file_names(self) -> list[str]:
        """Base names of every file in the build directory (each must be unique)."""
        return [PurePosixPath(p).name for p in (*self.upstream_files, *self.files)]


def _strings(raw: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> tuple[str, ...]:
    if key not in raw:
        if required:
            raise ConfigError(f"{where} is missing `{key}`", hint=f"add `{key} = [...]` to it")
        return ()
    value = raw[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"`{key}` in {where} must be an array of non-empty strings")
    return tuple(value)


def _relative(path: str, key: str, where: str) -> None:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        raise ConfigError(f"`{key}` entry `{path}` in {where} must be a relative path without `..`")


def _number(raw: Mapping[str, Any], key: str, where: str, default: float, *, whole: bool) -> float:
    value = raw.get(key, default)
    allowed = isinstance(value, int) or (isinstance(value, float) and not whole)
    if isinstance(value, bool) or not allowed or value <= 0:
        kind = "whole number" if whole else "number"
        raise ConfigError(f"`{key}` in {where} must be a positive {kind}")
    return float(value)


def parse_probe(raw: Mapping[str, Any], source: str) -> ProbeRecipe:
    """Validate the ``[probe]`` table of the definition file ``source``."""
    if not raw:
        raise ConfigError(
            f"{source} has no [probe] table",
            hint="declare the probe recipe with the package (see specs/vhd-tool.toml)",
        )
    where = f"[probe] of {source}"
    reject_unknown(raw, _KEYS, where)
    image = raw.get("image")
    if not isinstance(image, str) or not _IMAGE_NAME.match(image):
        raise ConfigError(f"`image` in {where} must name a directory of containers/ (like `probe-ocaml`)")
    packages = _strings(raw, "packages", where, required=False)
    for package in packages:
        if not _DEBIAN_NAME.match(package):
            raise ConfigError(f"`{package}` in `packages` of {where} is not a Debian package name")
    upstream_files = _strings(raw, "upstream_files", where)
    files = _strings(raw, "files", where)
    for key, paths in (("upstream_files", upstream_files), ("files", files)):
        for path in paths:
            _relative(path, key, where)
    compile_lines = _strings(raw, "compile", where)
    run = raw.get("run")
    if not isinstance(run, str) or not run.strip():
        raise ConfigError(f"{where} is missing `run`", hint='add `run = "./driver {port} {file} {requests}"`')
    used = set(re.findall(r"{(\w*)}", run))
    if used - _PLACEHOLDERS or "port" not in used or "file" not in used:
        raise ConfigError(
            f"`run` in {where} must use {{port}} and {{file}} (and may use {{requests}}), found {sorted(used)}"
        )
    ready = raw.get("ready")
    if not isinstance(ready, str) or not ready:
        raise ConfigError(f"{where} is missing `ready`", hint="the line the driver prints once it listens")
    unpatched_error = raw.get("unpatched_error", "")
    if not isinstance(unpatched_error, str):
        raise ConfigError(f"`unpatched_error` in {where} must be a string (the line the unpatched code prints)")
    recipe = ProbeRecipe(
        image=image,
        packages=packages,
        upstream_files=upstream_files,
        files=files,
        compile=compile_lines,
        run=run.strip(),
        ready=ready,
        stall=_number(raw, "stall", where, 10.0, whole=False),
        file_mib=int(_number(raw, "file_mib", where, 16, whole=True)),
        throttle_kib_s=int(_number(raw, "throttle_kib_s", where, 4096, whole=True)),
        timeout=_number(raw, "timeout", where, 600.0, whole=False),
        unpatched_error=unpatched_error,
    )
    names = recipe.file_names()
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{where} copies two files named {', '.join(duplicates)} into the build directory")
    return recipe


def recipe_files(recipe: ProbeRecipe, project_root: Path) -> list[Path]:
    """Our own probe files on disk; a missing one is a ConfigError naming it."""
    found = []
    for relative in recipe.files:
        path = project_root / relative
        if not path.is_file():
            raise ConfigError(f"probe file {relative} does not exist in {project_root}")
        found.append(path)
    return found
