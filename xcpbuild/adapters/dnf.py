"""dnf as a real client of a yum repository, against a throwaway root.

Nothing on the host is read or changed: ``reposdir=/dev/null`` hides the
host's repo files, cache and logs go under the temporary root, and the repo is
given with ``--repofrompath``. With a public key, ``gpgcheck`` and
``repo_gpgcheck`` are both on, so dnf itself checks ``repomd.xml.asc`` and
every package signature, exactly as an XCP-ng host configured with
``gpgcheck=1 repo_gpgcheck=1`` would.

``install`` really installs into the root with dnf's command line.
``check_install`` proves packages installable without installing them, through
dnf's library (``dnf_check_helper.py``): it resolves the transaction, checks the
repomd signature, each package's checksum and signature (dnf's ``rpmkeys``
command, over many files per process), and runs the transaction in rpm's test
mode with signatures required (dependencies, file conflicts, disk space,
package digests; nothing unpacked, no scriptlet run). For thousands of packages
that is a fraction of a real install, and of dnf's CLI in test mode, which
starts one ``rpmkeys`` per package. ``PublishChecks`` runs that check and the
publish's upgrade check in one helper run (``dnf_publish_helper.py``) started
before the staged repository exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcpbuild.adapters import owned
from xcpbuild.adapters.process import Completed, Conversation, require_tool, run
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
    installed: list[str]  # NEVRAs (NAME-EVR.ARCH), as installed or as the test transaction would install them
    output: str
    cached: tuple[str, ...] = ()  # repositories loaded from the upgrade check's kept solv cache, not their XML


def failure_detail(output: str) -> str:
    """dnf's reason, from its first ``Error``/``Problem`` line on."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    first = next((i for i, ln in enumerate(lines) if ln.lower().startswith(("error", "problem"))), None)
    # dnf often prints "Error:" alone, with the reason on the following lines.
    return " ".join(lines[first : first + 3]) if first is not None else (lines[-1:] or ["no output"])[0]


# What dnf (and EL7's yum-builddep) print for what it cannot install, one line per missing thing,
# and why it could not read a repository (which it then ignores, so a package in it is "missing").
# Debian dnf's local plugin always fails to read its own empty `_dnf_local`: that is never the reason.
_UNMET = re.compile(
    r"No match for argument: .+|No matching package to install: .+|nothing provides .+|No Package found for .+"
    r"|Problem( \d+)?: .+|.+ conflicts with .+",
    re.IGNORECASE,
)
_UNREADABLE = re.compile(
    r"Failed to download metadata .+|Cannot find a valid baseurl .+|GPG check FAILED.*"
    r"|repomd\.xml GPG signature verification error.*|Public key for .+ is not installed.*",
    re.IGNORECASE,
)
LOCAL_PLUGIN_REPO = "'_dnf_local'"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def without_ansi(line: str) -> str:
    """A line of a container's output without terminal colour codes (dnf colours its errors)."""
    return _ANSI.sub("", line)


def install_failure(output: str) -> str:
    """Why dnf/yum could not install what was asked: the repositories it could not read, then what it
    could not find; ``failure_detail`` when it said neither."""
    lines = [without_ansi(line).strip() for line in output.splitlines()]
    found: list[str] = []
    for pattern in (_UNREADABLE, _UNMET):
        for line in lines:
            match = pattern.search(line)
            said = match.group(0).strip() if match else ""
            if said and said not in found and LOCAL_PLUGIN_REPO not in said:
                found.append(said)
    return "; ".join(found[:6]) if found else failure_detail("\n".join(lines))


def base_argv(
    tmp: Path, releasever: str, repos: Sequence[Repo], public_key: Path | None, *, tsflags: str = "nodocs"
) -> list[str]:
    """dnf's command line with everything under ``tmp`` (installroot ``tmp/root``) and only ``repos``."""
    dnf = require_tool("dnf")
    root = tmp / "root"
    for sub in ("root", "cache", "log", "persist"):
        (tmp / sub).mkdir(exist_ok=True)
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
        f"--setopt=tsflags={tsflags}",
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
    return argv


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
    rpm = require_tool("rpm")
    # Owned: removing it also stops the gpg-agent dnf starts for the keyring it stages per repo.
    with owned.tempdir("dnf") as tmp:
        done = _transaction(tmp, repos, packages, public_key, releasever, timeout=timeout)
        root = tmp / "root"
        listed = run([rpm, "--root", root, "-qa", "--qf", "%{NAME}-%{EVR}.%{ARCH}\\n"], check=False)
        installed = sorted(line for line in listed.stdout.splitlines() if line and not line.startswith("gpg-pubkey"))
    return InstallResult(installed, done.stdout)


@dataclass(frozen=True)
class Unresolved:
    package: str  # NEVRA
    requires: tuple[str, ...]


@dataclass(frozen=True)
class UpgradeCheckResult:
    problem: str  # "" | live-install | upgrade | closure
    detail: str  # dnf's own words for the first two
    before: list[str]  # NEVRAs the live packages resolved to
    after: list[str]  # NEVRAs once upgraded to the staged ones
    unresolved: list[Unresolved]
    root: str = "fresh"  # how the live packages were recorded: "fresh", or "reused, N kept, M added"
    cached: tuple[str, ...] = ()  # the live repositories loaded from the kept solv cache, not their XML
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase of the helper


def _system_python(dnf_path: str) -> str:
    """The interpreter dnf itself runs on (its shebang): the one that can import dnf."""
    with open(dnf_path, "rb") as handle:
        first = handle.readline().decode("utf-8", "replace").strip()
    return first[2:].split()[0] if first.startswith("#!") else "python3"


@dataclass(frozen=True)
class UpgradeRequest:
    """The upgrade check's question, all known before the staged repository exists.

    Resolve ``packages`` from ``live``; later, an upgrade of them to the staged repository plus
    ``others``, and repoclosure of the staged one. ``cache``: a root a previous check saved, reused
    only where it provably holds what a fresh one would; ``save``: a directory (not yet existing)
    where a passing check leaves its root and manifest; ``staged_as``: the id the staged
    repository will have among the ``live`` ones of the next check (its kept solv cache's name).
    """

    live: tuple[Repo, ...]
    others: tuple[Repo, ...]
    packages: tuple[str, ...]
    cache: Path | None = None
    save: Path | None = None
    staged_as: str = ""


@dataclass(frozen=True)
class InstallRequest:
    """The install check's question, all known before the staged repository exists.

    Install ``packages`` from ``repos`` (the staged repository first) with ``public_key`` trusted (None: unsigned).
    """

    repos: tuple[Repo, ...]
    packages: tuple[str, ...]
    public_key: Path | None


# How the helper reads dnf's solution: "goal" (fast), or "transaction" (dnf's own, for a test to compare).
UPGRADE_SOLVER = "goal"
_SUBDIRS = ("root", "cache", "log", "persist")


class PublishChecks:
    """A publish's install and upgrade checks in one ``dnf_publish_helper.py`` run, started early.

    Entering starts the helper under dnf's own Python with both requests, so it imports dnf,
    trusts the key and resolves and records the live packages while the caller builds the staged
    repository (``install.repos[0]``); ``finish`` says it is ready and waits for both answers.
    Leaving stops the helper if it still runs and removes its temporary directory (and any
    gpg-agent dnf started there).
    """

    def __init__(
        self, releasever: str, upgrade: UpgradeRequest, install: InstallRequest, *, timeout: float = 900
    ) -> None:
        self.releasever, self.upgrade, self.install, self.timeout = releasever, upgrade, install, timeout
        self._stack = contextlib.ExitStack()
        self._helper: Conversation | None = None
        self._tmp = Path()

    def __enter__(self) -> PublishChecks:
        python = _system_python(require_tool("dnf"))
        if self.install.public_key is not None:
            require_tool("rpmkeys")
        with self._stack:
            self._tmp = self._stack.enter_context(owned.tempdir("dnf"))  # owned, as in install
            for part in ("upgrade", "install"):
                (self._tmp / part).mkdir()
            install = self._tmp / "install"
            for sub in _SUBDIRS:
                (install / sub).mkdir()
            ask = self.install
            request = {
                "tmp": str(self._tmp / "upgrade"),
                "releasever": self.releasever,
                "live": [[r.repo_id, r.path.resolve().as_uri()] for r in self.upgrade.live],
                "packages": list(self.upgrade.packages),
                "cache": str(self.upgrade.cache) if self.upgrade.cache else None,
                "save": str(self.upgrade.save) if self.upgrade.save else None,
                "staged_as": self.upgrade.staged_as,
                "solver": UPGRADE_SOLVER,
                "install": _install_request(install, self.releasever, ask.repos, ask.packages, ask.public_key),
            }
            helper = Path(__file__).with_name("dnf_publish_helper.py")
            # -I: isolated, so the helper's own folder (holding this dnf.py) does not shadow dnf's package.
            conversation = Conversation([python, "-I", helper], json.dumps(request) + "\n")
            self._helper = self._stack.enter_context(conversation)
            self._stack = self._stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def pid(self) -> int:
        assert self._helper is not None and self._helper.proc is not None
        return self._helper.proc.pid

    @property
    def tmp(self) -> Path:
        """The helper's temporary directory (removed on leaving)."""
        return self._tmp

    def _ready_line(self) -> str:
        staged = self.install.repos[0]
        request = {
            "staged": [[r.repo_id, r.path.resolve().as_uri()] for r in (staged, *self.upgrade.others)],
            "check": staged.repo_id,
        }
        return json.dumps(request) + "\n"

    def ready(self) -> None:
        """The staged repository is complete: both checks start on it now (``finish`` waits for them)."""
        assert self._helper is not None, "ready() outside the with block"
        self._helper.send(self._ready_line())

    def finish(self) -> tuple[InstallResult, UpgradeCheckResult]:
        """Both checks, once the staged repository is ready: the install (as ``check_install``), the upgrade.

        Says ``ready`` first if the caller did not. Raises VerifyError as ``check_install`` does when
        the packages do not install, or when the helper itself fails; the upgrade check's findings
        are in its result.
        """
        assert self._helper is not None, "finish() outside the with block"
        packages = self.install.packages
        done = self._helper.finish(self._ready_line(), self.timeout)
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            upgrade, installed = answer["upgrade"], answer["install"]
        except (IndexError, ValueError, KeyError, TypeError):
            raise VerifyError(f"the dnf checks failed: {failure_detail(done.stderr + done.stdout)}") from None
        log.debug("install check: %s", ", ".join(f"{k} {v:.2f}s" for k, v in installed.get("timings", {}).items()))
        return _install_result(installed, packages, done.stdout), _upgrade_result(upgrade)


def _upgrade_result(answer: dict[str, Any]) -> UpgradeCheckResult:
    return UpgradeCheckResult(
        problem=answer["stage"],
        detail=" ".join(answer["detail"].split()),
        before=answer["before"],
        after=answer["after"],
        unresolved=[Unresolved(p, tuple(reqs)) for p, reqs in answer["unresolved"]],
        root=answer.get("root", "fresh"),
        cached=tuple(answer.get("cached", ())),
        timings=answer.get("timings", {}),
    )


def _install_request(
    tmp: Path, releasever: str, repos: Sequence[Repo], packages: Sequence[str], public_key: Path | None
) -> dict[str, Any]:
    return {
        "tmp": str(tmp),
        "releasever": releasever,
        "repos": [[r.repo_id, r.path.resolve().as_uri()] for r in repos],
        "gpgkey": public_key.resolve().as_uri() if public_key is not None else None,
        "packages": list(packages),
        "jobs": len(os.sched_getaffinity(0)),
    }


def _install_result(answer: dict[str, Any], packages: Sequence[str], output: str) -> InstallResult:
    """What the install check's answer says, or VerifyError naming the stage and dnf's first reasons."""
    failed = f"dnf could not install {_names(packages)}"
    if answer["stage"]:
        raise VerifyError(f"{failed}: {check_failure(answer['stage'], answer['detail'])}")
    installed = sorted(answer["installed"])
    if not installed:
        raise VerifyError(f"dnf's test transaction for {_names(packages)} named no package to install")
    return InstallResult(installed, output, tuple(answer.get("cached", ())))


def check_install(
    repos: Sequence[Repo],
    packages: Sequence[str],
    public_key: Path | None,
    releasever: str,
    timeout: float = 600,
) -> InstallResult:
    """Prove ``packages`` installable from ``repos`` with one test transaction (see the module docstring).

    One run of ``dnf_check_helper.py`` under dnf's own Python: dnf's library with
    gpgcheck and repo_gpgcheck on, every package signature checked with dnf's
    ``rpmkeys`` command in one process per core rather than one per package, and
    rpm's test transaction requiring signatures as well. The result lists what
    the transaction would install (the packages and their dependencies). Raises
    VerifyError naming the stage and dnf's words for the first failures.
    """
    python = _system_python(require_tool("dnf"))
    if public_key is not None:
        require_tool("rpmkeys")
    helper = Path(__file__).with_name("dnf_check_helper.py")
    with owned.tempdir("dnf") as tmp:  # owned, as in install
        for sub in _SUBDIRS:
            (tmp / sub).mkdir()
        request = _install_request(tmp, releasever, repos, packages, public_key)
        # -I: isolated, so the helper's own folder (holding this dnf.py) does not shadow dnf's package.
        done = run([python, "-I", helper], input_text=json.dumps(request), timeout=timeout, check=False)
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        detail = failure_detail(done.stderr + done.stdout)
        raise VerifyError(f"dnf could not install {_names(packages)}: {detail}") from None
    return _install_result(answer, packages, done.stdout)


# What failed, by the helper's stage, for the one-line message.
_STAGES = {
    "metadata": "loading the repository metadata failed",
    "resolve": "resolving failed",
    "download": "a package does not match the metadata",
    "signature": "GPG check FAILED",
    "transaction": "rpm's test transaction failed",
}


def check_failure(stage: str, detail: Sequence[str]) -> str:
    """One line for a failed check: the stage, dnf's first reasons, how many more."""
    shown = "; ".join(detail[:3]) or "no detail"
    more = f" (and {len(detail) - 3} more)" if len(detail) > 3 else ""
    return f"{_STAGES.get(stage, stage)}: {shown}{more}"


def _transaction(
    tmp: Path,
    repos: Sequence[Repo],
    packages: Sequence[str],
    public_key: Path | None,
    releasever: str,
    *,
    timeout: float,
) -> Completed:
    argv = [*base_argv(tmp, releasever, repos, public_key), "install", *packages]
    done = run(argv, timeout=timeout, check=False)
    if not done.ok:
        raise VerifyError(f"dnf could not install {_names(packages)}: {failure_detail(done.stderr + done.stdout)}")
    return done


def _names(packages: Sequence[str]) -> str:
    """The packages for a message: all of a few, a count of many."""
    return " ".join(packages) if len(packages) <= 5 else f"{len(packages)} packages ({', '.join(packages[:3])}, ...)"
