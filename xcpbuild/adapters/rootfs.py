"""Root filesystems for base images, made from Debian's packages with mmdebstrap.

No registry is reachable on the project's machines, so the ``local`` target's
base is bootstrapped from the machine's own Debian mirror (read from its apt
configuration at run time, never written into the project) and packed as a
tarball the engine can import.

mmdebstrap (Debian's package) rather than debootstrap: it resolves and downloads
with apt, in parallel, and unpacks with dpkg, so a base takes about a third of
debootstrap's time here (benchmarks/README.md, "The main job"). The dpkg settings
below stay in the image (``/etc/dpkg/dpkg.cfg.d/99mmdebstrap``), so whatever is
installed on top of it later (the probe image) is unpacked the same fast way.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from xcpbuild.adapters import owned, process
from xcpbuild.errors import BuildError, ConfigError, ToolMissingError
from xcpbuild.log import get_logger

log = get_logger("rootfs")

APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
BOOTSTRAP_TIMEOUT = 1800.0
_HINT = "check that the Debian mirror in /etc/apt/sources.list(.d) answers; rerun with -v to see mmdebstrap's output"
# A build environment needs no documentation, manual pages or translations (copyright files stay), and no
# fsync after every unpacked file: an image that half-unpacked is thrown away, never repaired.
DPKG_OPTIONS = (
    "force-unsafe-io",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)
APT_OPTIONS = ('Acquire::Languages "none"',)


def _deb822_mirrors(text: str) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            found.append((uri, fields.get("suites", "").split()))
    return found


def _one_line_mirrors(text: str) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = [w for w in words[1:] if not w.startswith("[")]  # drop [signed-by=...] options
        if len(words) >= 2:
            found.append((words[0], [words[1]]))
    return found


def debian_mirror(suite: str, sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The mirror URI this machine's apt uses for ``suite`` (the machine's own choice, read at run time)."""
    candidates: list[tuple[str, list[str]]] = []
    for source in sources:
        files = sorted(source.glob("*")) if source.is_dir() else [source]
        for path in files:
            if not path.is_file():
                continue
            text = path.read_text(errors="replace")
            if path.suffix == ".sources":
                candidates += _deb822_mirrors(text)
            elif path.suffix == ".list" or path.name == "sources.list":
                candidates += _one_line_mirrors(text)
    for uri, suites in candidates:
        if suite in suites:
            return uri.rstrip("/")
    raise ConfigError(
        f"no Debian mirror for `{suite}` in this machine's apt configuration",
        hint="add a `deb` source for the suite to /etc/apt/sources.list.d/ (the one apt itself uses)",
    )


def bootstrap(suite: str, mirror: str, include: tuple[str, ...], out_tar: Path) -> Path:
    """Bootstrap a minbase ``suite`` with ``include`` (mmdebstrap) and pack it as ``out_tar``.

    The tarball is written beside its final name and renamed, so a failure never
    leaves a half-made root filesystem where the cache would find it.
    """
    tool = process.require_tool("mmdebstrap")
    if os.geteuid() != 0:
        raise ToolMissingError(
            "mmdebstrap needs root to make the local target's base image",
            hint="run this once as root (or with sudo); the base is cached and reused afterwards",
        )
    out_tar.parent.mkdir(parents=True, exist_ok=True)
    # Owned, and mmdebstrap's TMPDIR: a killed run's tree (and the /proc it mounted there) goes with the next run.
    with owned.tempdir(".rootfs", parent=out_tar.parent) as tmp:
        partial = tmp / "rootfs.tar"
        argv = [tool, "--variant=minbase", "--mode=root", "--format=tar"]
        if include:
            argv.append("--include=" + ",".join(include))
        argv += [f"--dpkgopt={option}" for option in DPKG_OPTIONS]
        argv += [f"--aptopt={option}" for option in APT_OPTIONS]
        argv += [suite, str(partial), mirror]
        try:
            process.run(
                argv,
                env={"TMPDIR": str(tmp)},
                timeout=BOOTSTRAP_TIMEOUT,
                on_line=lambda line: log.debug("mmdebstrap: %s", line),
            )
        except process.CommandFailed as exc:
            raise BuildError(f"mmdebstrap of {suite} from {mirror} failed: {exc.message}", hint=_HINT) from exc
        shutil.move(str(partial), out_tar)
    return out_tar
