"""Loaded by ``dnf_publish_helper.py`` under the system's Python (the one dnf runs on): the upgrade check.

One dnf process instead of three (install, upgrade, repoclosure), shared with the
install check, is what keeps the check within its time budget: dnf's start-up and
metadata loading dominate. ``Check.live`` needs only the live repositories (the
publish starts it before its staged repository exists), ``Check.staged`` the rest:

1. resolve the live package names against the live repositories and record the
   resolved set in an installroot's rpm database (a ``--justdb`` transaction of
   rpm's library: the upgrade needs to know what is installed, not the files);
2. with the staged metadata instead of the live channel, resolve an upgrade of
   everything with ``best`` on, so the newest staged version of each package
   must be reachable (no transaction is run);
3. repoclosure, newest versions only: every requirement of the newest packages
   of the staged repository must be provided by the newest packages of some
   repository. It runs even when the live packages do not resolve (then with
   nothing installed), so a broken live channel cannot let a broken update by.

Recording 2,000 packages costs seconds, so the installroot is kept between
checks (``cache``: a root a previous passing check saved, with ``manifest.json``
naming each recorded NEVRA, its package checksum and its header digest). The live
set is still resolved from scratch each time; only the difference from the
manifest is applied to a copy (one transaction erasing and installing), and before the copy
is used the rpm database dnf reads must hold exactly the resolved NEVRAs, the
kept ones with their recorded header digests. Anything else (no manifest, another
rpm, a large difference, an rpm failure, a mismatch) records the whole set into
a fresh root instead, which is what the check did before. A passing check writes
its root and then its manifest (last) into ``save``; the caller moves it into place.

Loading the live metadata is kept short the same way. A passing check also saves
libsolv's cache of the metadata it loaded (``solv/``: the staged repository's under
the id it has once live, ``staged_as``), and the next check puts those files in its
dnf cache before loading (``SolvSeed``; its install check too, for the other live
repositories). libdnf itself decides whether to use one: only a file
written by the same libsolv from a ``repomd.xml`` with the same checksum, so the
next live metadata (which is this check's staged metadata, unless something else
was published meanwhile) loads in a fifth of the time, and anything else is parsed
as before.

Signatures are not checked here: the new-package install check does that.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dnf
import dnf.exceptions
import dnf.selector
import dnf.util
import rpm

MANIFEST_FORMAT = 1
SOLV = "solv"  # in a saved root's dir: libsolv's caches of the metadata the check loaded
SOLV_SUFFIXES = (".solv", "-filenames.solvx")  # the files libdnf writes per repository (primary, filelists)


def _base(tmp: Path, root: Path | None, releasever: str, repos: list[list[str]]) -> Any:
    """A dnf Base with ``repos`` loaded, and ``root``'s rpm database as what is installed (None: nothing)."""
    base = dnf.Base()
    conf = base.conf
    conf.installroot = str(root or tmp / "empty")
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
    base.fill_sack(load_system_repo=root is not None)
    return base


def _nevra(pkg: Any) -> str:
    return f"{pkg.name}-{pkg.evr}.{pkg.arch}"


def _digest(value: Any) -> str | None:
    return value[1].hex() if value else None


def _solve(base: Any, solver: str) -> tuple[set[Any], set[Any]]:
    """``base.resolve()``'s verdict and its transaction's install and remove sets, without its history records.

    dnf turns a solved goal into a transaction by adding one history item per package, which is
    quadratic (0.6 s for 2,000 installs, a thousand times the solving); nothing here is recorded,
    so the sets are read from the goal the way ``Base._goal2transaction`` files them. The checks
    ``resolve`` makes around the solving (protected packages, weak-dependency excludes, no source
    package) are made the same way, and the error is dnf's own. ``solver="transaction"`` takes
    dnf's transaction instead (a test compares the two).
    """
    if solver == "transaction":
        base.resolve()
        return set(base.transaction.install_set), set(base.transaction.remove_set)
    goal = base._goal
    goal.add_protected(base.sack.query().filterm(name=base.conf.protected_packages))
    base._set_excludes_from_weak_to_goal()
    if not base._run_hawkey_goal(goal, False):
        raise dnf.exceptions.DepsolveError(dnf.util._format_resolve_problems(goal.problem_rules()))
    obsoleted = set(goal.list_obsoleted())
    installs: set[Any] = set()
    removes: set[Any] = set(goal.list_erasures())
    for pkg in [*goal.list_downgrades(), *goal.list_reinstalls()]:
        installs.add(pkg)
        removes.update(goal.obsoleted_by_package(pkg))
    for pkg in goal.list_installs():
        installs.add(pkg)
        removes.update(i for i in goal.obsoleted_by_package(pkg) if i in obsoleted or i.name == pkg.name)
    installonly = base._get_installonly_query().apply()
    for pkg in goal.list_upgrades():
        installs.add(pkg)
        obs = goal.obsoleted_by_package(pkg)
        upgraded = next((i for i in obs if i.name == pkg.name), obs[0])
        removes.update(i for i in obs if i != upgraded and (i in obsoleted or i.name == pkg.name))
        if pkg not in installonly:  # an installonly package (a kernel) is installed beside the one it upgrades
            removes.add(upgraded)
    source = sorted(str(p) for p in installs if p.arch == "src")
    if source:
        raise dnf.exceptions.Error(f"Will not install a source rpm package ({source[0]}).")
    return installs, removes


def _mark_installs(base: Any, specs: list[str]) -> None:
    """``base.install(spec)`` for each NEVRA, with one query for all of them.

    For a whole NEVRA (no glob in its arch) and ``multilib_policy=best``, dnf's
    ``install`` marks one selector of exactly the packages the NEVRA names, without
    their obsoleters (``Subject._get_best_selectors`` adds those to a bare name
    only); that is what a NEVRA the query finds gets here. dnf's ``install`` takes
    any other spec, and raises dnf's error for what it cannot find. A Subject per
    spec costs a tenth of a second for thousands.
    """
    found: dict[str, list[Any]] = {}
    for pkg in base.sack.query().available().filterm(nevra_strict=specs):
        found.setdefault(_nevra(pkg), []).append(pkg)
    best = base.conf.multilib_policy == "best"
    for spec in specs:
        if best and spec in found:
            selector = dnf.selector.Selector(base.sack).set(pkg=base.sack.query().filterm(pkg=found[spec]))
            base._goal.install(select=selector, optional=False)
        else:
            base.install(spec)


def _files(pkgs: Iterable[Any]) -> dict[Any, str]:
    """``pkg.localPkg()`` of each package: for a local repository that is the repository's path
    joined with the package's location, so one call per repository gives the path for the rest
    (localPkg costs 17 µs a package)."""
    bases: dict[str, str | None] = {}
    files = {}
    for pkg in pkgs:
        location = pkg.location.lstrip("/")
        if pkg.reponame not in bases:
            path = pkg.localPkg()
            local = pkg.repo._repo.isLocal() and path.endswith("/" + location)
            bases[pkg.reponame] = path[: -len(location)] if local else None
            files[pkg] = path
            continue
        base = bases[pkg.reponame]
        files[pkg] = base + location if base is not None else pkg.localPkg()
    return files


def _closure(base: Any, check: str) -> list[list[Any]]:
    query = base.sack.query()
    newest = query.filter(empty=True)
    for repo in base.repos.iter_enabled():
        newest = newest.union(query.filter(reponame=repo.id).latest())
    unresolved = []
    provided: dict[str, bool] = {}  # by requirement: thousands of packages share a few (/bin/sh, a library)
    for pkg in sorted(newest.filter(reponame=check)):
        missing = []
        for req in pkg.requires:
            text = str(req)
            if text.startswith(("rpmlib(", "solvable:")):
                continue
            if text not in provided:
                provided[text] = bool(newest.filter(provides=req))
            if not provided[text]:
                missing.append(text)
        if missing:
            unresolved.append([_nevra(pkg), missing])
    return unresolved


def _record(root: Path, erase: list[str], install: list[str]) -> bool:
    """``rpm --root ROOT --justdb --nodeps --noscripts --notriggers --nosignature --nodigest``, erasing
    the NEVRAs ``erase`` and installing the files ``install``, as one transaction of rpm's library
    (the ``rpm`` command costs 20 ms to start, twice for a difference). False if rpm refuses."""
    if not erase and not install:
        return True
    ts = rpm.TransactionSet(str(root))
    ts.setVSFlags(rpm._RPMVSF_NOSIGNATURES | rpm._RPMVSF_NODIGESTS)
    ts.setFlags(rpm.RPMTRANS_FLAG_JUSTDB | rpm.RPMTRANS_FLAG_NOSCRIPTS | rpm.RPMTRANS_FLAG_NOTRIGGERS)
    opened: dict[str, int] = {}

    def callback(what: int, _amount: int, _total: int, key: str, _data: object) -> int | None:
        if what == rpm.RPMCALLBACK_INST_OPEN_FILE:
            opened[key] = os.open(key, os.O_RDONLY)
            return opened[key]
        if what == rpm.RPMCALLBACK_INST_CLOSE_FILE:
            os.close(opened.pop(key))
        return None

    try:
        for nevra in erase:
            ts.addErase(nevra)  # by label, as `rpm -e` finds it; rpm.error if it is not installed
        for path in install:
            fd = os.open(path, os.O_RDONLY)
            try:
                ts.addInstall(ts.hdrFromFdno(fd), path, "i")
            finally:
                os.close(fd)
        ts.order()
        # None: done; a list: refused (its problems), or empty if it ran with errors.
        outcome = ts.run(callback, "")
    except (rpm.error, OSError):
        return False
    finally:
        for fd in opened.values():
            os.close(fd)
        ts.closeDB()
    return outcome is None


def _identity() -> dict[str, Any]:
    """What a saved root is only valid with: this format, this rpm and its database location."""
    return {"format": MANIFEST_FORMAT, "rpm": rpm.__version__, "dbpath": rpm.expandMacro("%{_dbpath}")}


def _load_manifest(cache: str | None) -> dict[str, Any] | None:
    if not cache:
        return None
    try:
        manifest = json.loads((Path(cache) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("identity") != _identity():
        return None
    packages = manifest.get("packages")
    return manifest if isinstance(packages, dict) else None


def _from_cache(
    cache: str, manifest: dict[str, Any], wanted: dict[str, Any], root: Path
) -> dict[str, str | None] | None:
    """Copy the cached root to ``root`` and apply the difference; the kept NEVRAs' header digests, or None."""
    held: dict[str, Any] = manifest["packages"]
    removed = [n for n, entry in held.items() if n not in wanted or entry.get("chksum") != wanted[n]["chksum"]]
    added = [n for n in wanted if n not in held or n in removed]
    if len(removed) + len(added) > max(16, len(wanted) // 2):
        return None  # about as much work as a fresh root
    try:
        # No -shm: sqlite rebuilds the WAL index when the first connection opens the copy.
        shutil.copytree(Path(cache) / "root", root, ignore=shutil.ignore_patterns("*-shm", ".rpm.lock"))
    except OSError:
        return None
    if not _record(root, removed, [wanted[n]["file"] for n in added]):
        return None
    return {n: held[n].get("hdr") for n in held if n not in removed}


def _fresh(root: Path, wanted: dict[str, Any]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if not _record(root, [], [pkg["file"] for pkg in wanted.values()]):
        raise RuntimeError(f"rpm could not record the {len(wanted)} live package(s) in {root}")


class SolvSeed:
    """The kept solv files of some repositories, copied into a dnf cache dir before dnf loads it.

    ``kept``: a saved root's dir (its ``solv/``), or None. libdnf decides whether to use each
    file (written by the same libsolv from a ``repomd.xml`` with the same checksum); ``used``
    says which it did, ``drop`` removes them all (one libsolv cannot read fails the load: the
    caller drops them and loads again). The install check gets one too, for its other live
    repositories (``dnf_publish_helper``).
    """

    def __init__(self, kept: str | None, repo_ids: Iterable[str], cachedir: Path) -> None:
        self.cachedir = cachedir
        self.inodes: dict[str, int] = {}  # repository -> its main file's inode once copied
        for repo_id in repo_ids if kept else ():
            for suffix in SOLV_SUFFIXES:
                copy = cachedir / f"{repo_id}{suffix}"
                try:
                    shutil.copyfile(Path(str(kept), SOLV, copy.name), copy)
                except OSError:
                    continue
                if suffix == ".solv":
                    self.inodes[repo_id] = copy.stat().st_ino

    def drop(self) -> None:
        for repo_id in self.inodes:
            for suffix in SOLV_SUFFIXES:
                (self.cachedir / f"{repo_id}{suffix}").unlink(missing_ok=True)
        self.inodes = {}

    def used(self) -> list[str]:
        """The repositories libdnf loaded from their seeded file: it writes a new file (a new inode) otherwise."""
        used = []
        for repo_id, inode in self.inodes.items():
            try:
                if (self.cachedir / f"{repo_id}.solv").stat().st_ino == inode:
                    used.append(repo_id)
            except OSError:
                pass
        return sorted(used)


def _keep_solv(cachedir: Path, names: dict[str, str], save: Path) -> None:
    """The solv files of the repositories loaded into ``save``'s ``solv/``, each under its name once live."""
    (save / SOLV).mkdir(exist_ok=True)
    for repo_id, name in names.items():
        for suffix in SOLV_SUFFIXES:
            try:
                shutil.copyfile(cachedir / f"{repo_id}{suffix}", save / SOLV / f"{name}{suffix}")
            except OSError:
                pass  # not written (a repository without filelists): the next check parses its XML


def _recorded(staged: Any) -> dict[str, str | None]:
    return {_nevra(p): _digest(p.hdr_chksum) for p in staged.sack.query().installed()}


def _matches(recorded: dict[str, str | None], wanted: dict[str, Any], kept: dict[str, str | None]) -> bool:
    return recorded.keys() == wanted.keys() and all(recorded[n] == digest for n, digest in kept.items())


def _save(save: Path, recorded: dict[str, str | None], wanted: dict[str, Any]) -> None:
    """The manifest goes in last: a root without one is never used."""
    packages = {n: {"chksum": wanted[n]["chksum"], "hdr": recorded[n]} for n in sorted(wanted)}
    text = json.dumps({"identity": _identity(), "packages": packages})
    (save / "manifest.json.tmp").write_text(text)
    (save / "manifest.json.tmp").replace(save / "manifest.json")


class Check:
    """One upgrade check in two halves: ``live`` needs only the live repositories, ``staged`` the staged one."""

    def __init__(self, request: dict[str, Any], tmp: Path) -> None:
        self.request, self.tmp = request, tmp
        self.answer: dict[str, Any] = {
            "stage": "", "detail": "", "before": [], "after": [], "unresolved": [], "root": "fresh", "cached": [],
            "timings": {},
        }  # fmt: skip
        self.clock = time.monotonic()
        self.wanted: dict[str, Any] = {}
        self.kept: dict[str, str | None] | None = None
        for sub in ("cache", "log", "persist", "empty"):
            (tmp / sub).mkdir()
        self.save = Path(request["save"]) if request.get("save") else None
        self.root = self.save / "root" if self.save else tmp / "root"

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.answer["timings"][name] = round(now - self.clock, 3)
        self.clock = now

    def live(self) -> None:
        """Resolve the live packages and record them in ``root`` (a kept root and the difference, or fresh)."""
        request, tmp, answer = self.request, self.tmp, self.answer
        self.root.mkdir(parents=True)
        if not request["packages"]:
            return
        seed = SolvSeed(request.get("cache"), [repo_id for repo_id, _ in request["live"]], tmp / "cache")
        try:
            live = _base(tmp, None, request["releasever"], request["live"])
        except dnf.exceptions.Error:
            if not seed.inodes:
                raise
            seed.drop()  # a kept file libsolv could not read: parse the XML instead
            live = _base(tmp, None, request["releasever"], request["live"])
        self.answer["cached"] = seed.used()
        self.lap("live-load")
        try:
            if request.get("solver", "goal") == "transaction":
                for spec in request["packages"]:
                    live.install(spec)
            else:
                _mark_installs(live, request["packages"])
            installs, _ = _solve(live, request.get("solver", "goal"))
            files = _files(installs)
            self.wanted = {_nevra(p): {"chksum": _digest(p.chksum), "file": files[p]} for p in installs}
        except dnf.exceptions.Error as exc:
            # Nothing to upgrade from; repoclosure of the staged metadata still runs (empty root).
            answer.update(stage="live-install", detail=str(exc))
        live.close()
        self.lap("live-resolve")
        manifest = _load_manifest(request.get("cache")) if self.wanted else None
        if manifest is not None:
            shutil.rmtree(self.root)
            self.kept = _from_cache(request["cache"], manifest, self.wanted, self.root)
        if self.kept is None and self.wanted:
            _fresh(self.root, self.wanted)
        self.lap("record")

    def staged(self, staged_repos: list[list[str]], check: str) -> dict[str, Any]:
        """The upgrade to the staged metadata and repoclosure; the answer."""
        request, tmp, answer, wanted, root = self.request, self.tmp, self.answer, self.wanted, self.root
        staged = _base(tmp, root, request["releasever"], staged_repos)
        recorded = _recorded(staged)
        if self.kept is not None and not _matches(recorded, wanted, self.kept):
            staged.close()  # the cached root does not hold what a fresh one would: use a fresh one
            _fresh(root, wanted)
            self.kept = None
            staged = _base(tmp, root, request["releasever"], staged_repos)
            recorded = _recorded(staged)
        kept = self.kept
        answer["root"] = "fresh" if kept is None else f"reused, {len(kept)} kept, {len(wanted) - len(kept)} added"
        self.lap("staged-load")
        answer["before"] = sorted(recorded)
        if wanted:
            try:
                staged.upgrade_all()
                installs, removes = _solve(staged, request.get("solver", "goal"))
            except dnf.exceptions.Error as exc:
                answer.update(stage="upgrade", detail=str(exc))
                staged.close()
                return answer
            removed = {_nevra(p) for p in removes}
            added = {_nevra(p) for p in installs}
            answer["after"] = sorted((set(answer["before"]) - removed) | added)
        answer["unresolved"] = _closure(staged, check)
        staged.close()
        self.lap("upgrade-closure")
        if answer["unresolved"]:
            answer["stage"] = "closure"
        elif self.save and wanted and _matches(recorded, wanted, {}):
            staged_as = request.get("staged_as") or ""  # "": the staged repository's is not kept
            names = {repo_id: staged_as if repo_id == check else repo_id for repo_id, _ in staged_repos}
            names = {repo_id: name for repo_id, name in names.items() if name}
            _keep_solv(tmp / "cache", names, self.save)
            _save(self.save, recorded, wanted)
        return answer
