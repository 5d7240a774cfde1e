"""Expanding a spec with the host's rpmspec: macros defined, conditionals resolved, errors with their line.

Package repositories' specs are used as they are; to know which SourceN and
PatchN lines a build will use (``%if`` blocks chosen by ``--define``), and its
name, version and release, xcpbuild asks rpmspec itself rather than guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xcpbuild.adapters import process
from xcpbuild.errors import ConfigError

TIMEOUT = 60.0


def expand(spec: Path, defines: Sequence[tuple[str, str]], *, sourcedir: Path) -> str:
    """``rpmspec -P`` of ``spec`` with ``defines`` (name, value); a ConfigError quoting rpmspec on failure."""
    argv: list[str] = [process.require_tool("rpmspec"), "-P", "--define", f"_sourcedir {sourcedir}"]
    for name, value in defines:
        argv += ["--define", f"{name} {value}"]
    done = process.run([*argv, str(spec)], timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        errors = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        first = next((line for line in errors if line.startswith("error:")), errors[0] if errors else "no message")
        raise ConfigError(
            f"rpmspec cannot parse {spec}: {first.removeprefix('error: ')}",
            hint="fix the spec (`rpmspec -P` shows how rpm reads it), or pass the --define it expects",
        )
    return done.stdout
