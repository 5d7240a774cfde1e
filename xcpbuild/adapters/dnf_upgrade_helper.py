"""Run by the system's Python (the one dnf runs on), never imported by xcpbuild: the upgrade check in one process.

One dnf process instead of three (install, upgrade, repoclosure) is what keeps the
check within its time budget: dnf's start-up and metadata loading dominate. It
reads a JSON request on stdin and prints a JSON answer:

1. resolve the live package names against the live repositories and record the
   resolved set in a fresh installroot's rpm database (``rpm --justdb``: the
   upgrade needs to know what is installed, not the files);
2. with the staged metadata instead of the live channel, resolve an upgrade of
   everything with ``best`` on, so the newest staged version of each package
   must be reachable (no transaction is run);
3. repoclosure, newest versions only: every requirement of the newest packages
   of the staged repository must be provided by the newest packages of some
   repository.

Signatures are not checked here: the new-package install check does that.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import dnf
import dnf.exceptions


def _base(tmp: Path, releasever: str, repos: list[list[str]]) -> Any:
    base = dnf.Base()
    conf = base.conf
    conf.installroot = str(tmp / "root")
    conf.releasever = releasever
    conf.cachedir = str(tmp / "cache")
    conf.logdir = str(tmp / "log")
    conf.persistdir = str(tmp / "persist")
    conf.reposdir = []
    conf.install_weak_deps = False
    conf.best = True
    conf.gpgcheck = False
    conf.optional_metadata_types = ["filelists"]  # file requirements beyond primary's short list
    for repo_id, uri in repos:
        base.repos.add_new_repo(repo_id, conf, baseurl=[uri], gpgcheck=False, repo_gpgcheck=False)
    base.fill_sack(load_system_repo=True)
    return base


def _nevra(pkg: Any) -> str:
    return f"{pkg.name}-{pkg.evr}.{pkg.arch}"


def _closure(base: Any, check: str) -> list[list[Any]]:
    query = base.sack.query()
    newest = query.filter(empty=True)
    for repo in base.repos.iter_enabled():
        newest = newest.union(query.filter(reponame=repo.id).latest())
    unresolved = []
    for pkg in sorted(newest.filter(reponame=check)):
        missing = [
            str(req)
            for req in pkg.requires
            if not str(req).startswith(("rpmlib(", "solvable:")) and not newest.filter(provides=req)
        ]
        if missing:
            unresolved.append([_nevra(pkg), missing])
    return unresolved


def main() -> int:
    request = json.load(sys.stdin)
    answer: dict[str, Any] = {"stage": "", "detail": "", "before": [], "after": [], "unresolved": []}
    with tempfile.TemporaryDirectory(prefix="xcpbuild-dnf-") as name:
        tmp = Path(name)
        for sub in ("root", "cache", "log", "persist"):
            (tmp / sub).mkdir()
        if request["packages"]:
            live = _base(tmp, request["releasever"], request["live"])
            try:
                for spec in request["packages"]:
                    live.install(spec)
                live.resolve()
            except dnf.exceptions.Error as exc:
                answer.update(stage="live-install", detail=str(exc))
                print(json.dumps(answer))
                return 0
            files = [pkg.localPkg() for pkg in live.transaction.install_set]
            live.close()
            subprocess.run(
                ["rpm", "--root", str(tmp / "root"), "-i", "--justdb", "--nodeps", "--noscripts", "--notriggers",
                 "--nosignature", "--nodigest", *files],
                check=True, capture_output=True,
            )  # fmt: skip
        staged = _base(tmp, request["releasever"], request["staged"])
        before = staged.sack.query().installed()
        answer["before"] = sorted(_nevra(p) for p in before)
        if request["packages"]:
            try:
                staged.upgrade_all()
                staged.resolve()
            except dnf.exceptions.Error as exc:
                answer.update(stage="upgrade", detail=str(exc))
                print(json.dumps(answer))
                return 0
            removed = {_nevra(p) for p in staged.transaction.remove_set}
            added = {_nevra(p) for p in staged.transaction.install_set}
            answer["after"] = sorted((set(answer["before"]) - removed) | added)
        answer["unresolved"] = _closure(staged, request["check"])
        if answer["unresolved"]:
            answer["stage"] = "closure"
        staged.close()
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
