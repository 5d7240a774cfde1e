"""dnf as a real client of a yum repository, installing into a throwaway root.

Nothing on the host is read or changed: ``reposdir=/dev/null`` hides the
host's repo files, cache and logs go under the temporary root, and the repo is
given with ``--repofrompath``. With a public key, ``gpgcheck`` and
``repo_gpgcheck`` are both on, so dnf itself checks ``repomd.xml.asc`` and
every package signature, exactly as an XCP-ng host configured with
``gpgcheck=1 repo_gpgcheck=1`` would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.adapters import owned
from xcpbuild.adapters.process import require_tool, run
from xcpbuild.errors import VerifyError
from xcpbuild.log import get_logger

log = get_logger("dnf")


@dataclass(frozen=True)
class Repo:
    """One repository for dnf: an id and the directory holding ``repodata/``."""

    repo_id: str
    path: Path


@dataclass(frozen=True)
class InstallResult:
    installed: list[str]  # NEVRAs as the installroot's rpm database lists them
    output: str


def install(
    repos: Sequence[Repo],
    packages: Sequence[str],
    public_key: Path | None,
    releasever: str,
    timeout: float = 300,
) -> InstallResult:
    """Install ``packages`` (names or NEVRAs) from ``repos`` into a fresh installroot.

    Raises VerifyError with dnf's last message when resolution or installation
    fails (including a bad package or repomd signature).
    """
    dnf = require_tool("dnf")
    rpm = require_tool("rpm")
    # Owned: removing it also stops the gpg-agent dnf starts for the keyring it stages per repo.
    with owned.tempdir("dnf") as tmp:
        root = tmp / "root"
        for sub in ("root", "cache", "log", "persist"):
            (tmp / sub).mkdir()
        argv: list[str] = [
            dnf,
            "-y",
            f"--installroot={root}",
            f"--releasever={releasever}",
            "--setopt=reposdir=/dev/null",
            f"--setopt=cachedir={tmp}/cache",
            f"--setopt=logdir={tmp}/log",
            f"--setopt=persistdir={tmp}/persist",
            "--setopt=install_weak_deps=0",
            "--setopt=tsflags=nodocs",
            "--noplugins",
        ]
        for repo in repos:
            argv += [f"--repofrompath={repo.repo_id},{repo.path.resolve().as_uri()}", f"--repo={repo.repo_id}"]
            if public_key is not None:
                argv += [
                    f"--setopt={repo.repo_id}.gpgcheck=1",
                    f"--setopt={repo.repo_id}.repo_gpgcheck=1",
                    f"--setopt={repo.repo_id}.gpgkey={public_key.resolve().as_uri()}",
                ]
            else:
                argv += [f"--setopt={repo.repo_id}.gpgcheck=0", f"--setopt={repo.repo_id}.repo_gpgcheck=0"]
        argv += ["install", *packages]
        done = run(argv, timeout=timeout, check=False)
        if not done.ok:
            lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            first = next((i for i, ln in enumerate(lines) if ln.lower().startswith(("error", "problem"))), None)
            # dnf often prints "Error:" alone, with the reason on the following lines.
            detail = " ".join(lines[first : first + 3]) if first is not None else (lines[-1:] or ["no output"])[0]
            raise VerifyError(f"dnf could not install {' '.join(packages)}: {detail}")
        listed = run([rpm, "--root", root, "-qa", "--qf", "%{NAME}-%{EVR}.%{ARCH}\\n"], check=False)
        installed = sorted(line for line in listed.stdout.splitlines() if line and not line.startswith("gpg-pubkey"))
    return InstallResult(installed, done.stdout)
