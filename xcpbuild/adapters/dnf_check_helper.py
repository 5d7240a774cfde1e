"""Run by the system's Python (the one dnf runs on), never imported by xcpbuild: the publish's install check.

The check a client with ``gpgcheck=1 repo_gpgcheck=1`` makes, through dnf's own
library in one process, for thousands of packages at once. It reads a JSON
request on stdin and prints a JSON answer:

1. load the repositories with ``gpgcheck`` and ``repo_gpgcheck`` on (librepo
   refuses a ``repomd.xml`` whose signature does not verify against the key);
2. mark every requested package for install and resolve (dependencies from the
   repositories given, nothing installed in the fresh root);
3. "download" the packages: for local repositories dnf checks each file against
   the checksum primary.xml records;
4. check every package signature as dnf's command line does, with the same
   ``rpmkeys --checksig`` command and dnf's own reading of its output, but one
   ``rpmkeys`` per core over all the files instead of one process per package
   (dnf 4.14's CLI starts one per package: two thirds of a 2,000-package check).
   The key is imported into the root's rpm database by dnf itself
   (``package_import_key``, after ``package_signature_check`` reports it missing);
5. run the transaction in rpm's test mode with ``%_pkgverify_level signature``,
   so rpm itself also refuses any package whose signature does not verify
   against that database, then checks dependencies, file conflicts and disk
   space without unpacking anything.

dnf's library leaves step 4 to its caller (its CLI does it in ``gpgsigcheck``);
here it is done with dnf's own command and parser, and step 5 makes rpm enforce
it a second time inside dnf's transaction.

``prepare`` does, before the repositories are ready, the part that depends only
on the key: what a host that already trusts the repository key holds. The key
goes into each repository's keyring in dnf's cache (libdnf's ``pubring``, where
libdnf imports it after a first failed verification) and into the
root's rpm database (``pgpImportPubkey``, as dnf's key import does). librepo then
verifies ``repomd.xml.asc`` against that keyring at the first attempt, and the
package signatures are checked against that database, in one ``rpmkeys`` batch
per core. Without it (or if it failed) dnf imports the key itself, on the way.
rpm's ``_dbpath`` is expanded once and fixed as it expanded (``fix_dbpath``, which
both entry points call first): Debian's rpm computes it with a shell each time it
is expanded after rpm reads its configuration, which libdnf and every rpm command
do again and again; the fixed value holds for those re-reads and commands. gpgme
finds its engines (five commands) in ``prepare`` too, not while librepo verifies.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dnf
import dnf.exceptions
import dnf.rpm.miscutils
import dnf.yum.misc
import gpg
import rpm

# dnf's _sig_check_pkg: what each rpmkeys result means, in dnf's words.
_SIG_MESSAGES = {
    1: "Public key for {} is not installed",
    2: "Problem opening package {}",
    3: "Public key for {} is not trusted",
    4: "Package {} is not signed",
}


def _configured(request: dict[str, Any]) -> Any:
    """A dnf Base with the request's configuration and repositories, nothing loaded."""
    tmp = Path(request["tmp"])
    base = dnf.Base()
    conf = base.conf
    conf.installroot = str(tmp / "root")
    conf.releasever = request["releasever"]
    conf.cachedir = str(tmp / "cache")
    conf.logdir = str(tmp / "log")
    conf.persistdir = str(tmp / "persist")
    conf.reposdir = []
    conf.install_weak_deps = False
    conf.assumeyes = True  # import the repository's configured key, as `dnf -y` does
    conf.tsflags = ["nodocs", "test"]
    key = request["gpgkey"]
    for repo_id, uri in request["repos"]:
        if key:
            base.repos.add_new_repo(repo_id, conf, baseurl=[uri], gpgcheck=True, repo_gpgcheck=True, gpgkey=[key])
        else:
            base.repos.add_new_repo(repo_id, conf, baseurl=[uri], gpgcheck=False, repo_gpgcheck=False)
    return base


class Prepared:
    """What ``prepare`` did: the configured Base, whether the key is trusted already, and the kept
    solv files put in dnf's cache (``dnf_upgrade_helper.SolvSeed``, or None)."""

    def __init__(self, base: Any, trusted: bool, seed: Any = None) -> None:
        self.base, self.trusted, self.seed = base, trusted, seed


def _trust_key(base: Any, key_uri: str) -> None:
    """The key into each repository's keyring in dnf's cache and into the root's rpm database."""
    raw = Path(key_uri.removeprefix("file://")).read_bytes()
    packets = dnf.yum.misc.procgpgkey(raw)  # the unarmoured key, as dnf hands it to rpm
    for repo in base.repos.iter_enabled():
        # A keyring in GnuPG's plain format (packets one after the other): gpg reads a home's
        # pubring.gpg when it has no pubring.kbx, so librepo's gpgme verifies against it, and no
        # gpg import (which starts a gpg-agent) is needed.
        pubring = Path(repo._repo.getCachedir()) / "pubring"
        pubring.mkdir(mode=0o700, parents=True, exist_ok=True)
        (pubring / "pubring.gpg").write_bytes(packets)
    ts = rpm.TransactionSet(base.conf.installroot)
    try:
        if ts.pgpImportPubkey(packets) != 0:
            raise ValueError("rpm did not import the key")
    finally:
        ts.closeDB()


def fix_dbpath(home: Path) -> str:
    """rpm's ``_dbpath`` expanded once, and fixed at that for this process and the commands it starts.

    Debian defines it as ``%(bash -c 'echo ~/.rpmdb')``: a shell each time it is expanded after
    rpm reads its configuration (a dozen times in a publish's checks). rpm reads
    ``~/.rpmmacros`` last: HOME becomes ``home``, whose ``.rpmmacros`` holds the user's own
    (a macro file cannot load another) and then the expansion, and rpm reads its configuration
    again.
    """
    dbpath = str(rpm.expandMacro("%{_dbpath}"))
    try:
        own = Path("~/.rpmmacros").expanduser().read_text()
    except (OSError, RuntimeError, UnicodeDecodeError):  # none (or no HOME): rpm's defaults
        own = ""
    home.mkdir(parents=True, exist_ok=True)
    (home / ".rpmmacros").write_text(f"{own}\n%_dbpath {dbpath.replace('%', '%%')}\n")
    os.environ["HOME"] = str(home)
    rpm.reloadConfig()
    return dbpath


def prepare(request: dict[str, Any], seed: Any = None) -> Prepared:
    """Everything before the repositories are ready (see the module docstring); never raises.

    ``seed``: the kept solv files already copied into dnf's cache for the repositories that
    are live already (a ``dnf_upgrade_helper.SolvSeed``), kept in the answer's ``cached``.
    """
    try:
        gpg.core.get_engine_info()  # gpgme's engines, found once per process (librepo's gpgme is this one)
    except Exception as exc:  # librepo finds them itself, and says what is wrong
        print(f"gpgme did not find its engines ahead: {exc}", file=sys.stderr)
    base = _configured(request)
    trusted = False
    if request["gpgkey"]:
        try:
            _trust_key(base, request["gpgkey"])
            trusted = True
        except Exception as exc:  # dnf then imports the key itself, and says what is wrong with it
            print(f"the key was not imported ahead: {exc}", file=sys.stderr)
    return Prepared(base, trusted, seed)


def _nevra(pkg: Any) -> str:
    return f"{pkg.name}-{pkg.evr}.{pkg.arch}"


def _verified(pkg: Any) -> bool:
    try:
        return pkg.verifyLocalPkg() is True
    except Exception:  # dnf raises whatever libdnf raises for an unreadable file
        return False


def _import_keys(base: Any, pkgs: list[Any]) -> list[str]:
    """dnf's own first check of one package per repository, importing the key where it reports it missing."""
    problems = []
    for repo_id in sorted({p.reponame for p in pkgs}):
        first = next(p for p in pkgs if p.reponame == repo_id)
        result, message = base.package_signature_check(first)
        if result == 1:
            base.package_import_key(first)  # raises dnf.exceptions.Error when the key does not help
        elif result != 0:
            problems.append(message)
    return problems


def _rpmkeys_batch(root: str, files: list[str]) -> tuple[dict[str, int], str]:
    """dnf's ``rpmkeys --checksig`` over ``files``, read with dnf's own parser: {file: dnf's result code}."""
    binary = dnf.rpm.miscutils._find_rpmkeys_binary()
    argv = ["rpmkeys", "--checksig", "--root", root, "--verbose",
            "--define=_pkgverify_level signature", "--define=_pkgverify_flags 0x0", "--", *files]  # fmt: skip
    env = {**os.environ, "LC_ALL": "C"}
    done = subprocess.run(argv, executable=binary, env=env, capture_output=True, cwd="/", check=False)
    groups: dict[str, list[bytes]] = {}
    current: list[bytes] | None = None
    for line in done.stdout.split(b"\n"):
        if line.endswith(b":") and not line[:1].isspace() and line[:-1].decode() in files:
            current = groups.setdefault(line[:-1].decode(), [])
        elif current is not None and line:
            current.append(line)
    codes = {}
    for name in files:
        lines = groups.get(name)
        # As dnf reads one package's output: "-:" first, an empty entry after the last newline.
        codes[name] = 2 if lines is None else dnf.rpm.miscutils._process_rpm_output([b"-:", *lines, b""])
    if done.returncode < 0 or (done.returncode and not any(codes.values())):
        codes = dict.fromkeys(files, 2)  # rpmkeys itself failed: nothing is proven
    return codes, done.stderr.decode("utf-8", "replace").strip()


def _check_signatures(base: Any, pkgs: list[Any], jobs: int) -> list[str]:
    root = base.conf.installroot
    files = [p.localPkg() for p in pkgs if base.repos[p.reponame].gpgcheck]
    shards = [files[i::jobs] for i in range(jobs) if files[i::jobs]]
    problems: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(len(shards) or 1) as pool:
        for codes, stderr in pool.map(lambda shard: _rpmkeys_batch(root, shard), shards):
            for name, code in codes.items():
                if code:
                    problems.append(_SIG_MESSAGES.get(code, _SIG_MESSAGES[2]).format(Path(name).name))
            if stderr and any(codes.values()):
                problems.append(stderr.splitlines()[0])
    return problems


def check(request: dict[str, Any], prepared: Prepared | None = None) -> dict[str, Any]:
    """The install check of ``request`` (see the module docstring), ``prepare``'d or not; the answer."""
    answer: dict[str, Any] = {"stage": "", "detail": [], "installed": [], "timings": {}, "key": "", "cached": []}
    clock = [time.monotonic()]

    def lap(name: str) -> None:
        now = time.monotonic()
        answer["timings"][name] = round(now - clock[0], 3)
        clock[0] = now

    def fail(stage: str, *detail: str) -> dict[str, Any]:
        answer.update(stage=stage, detail=[" ".join(d.split()) for d in detail])
        return answer

    prepared = prepared or Prepared(_configured(request), False)
    base = prepared.base
    if request["gpgkey"]:
        answer["key"] = "ahead" if prepared.trusted else "by dnf"  # who imported the key: prepare, or dnf itself
    seed = prepared.seed
    try:
        try:
            base.fill_sack(load_system_repo=True)
        except dnf.exceptions.Error:
            if seed is None or not seed.inodes:
                raise
            seed.drop()  # a kept solv file libsolv could not read: parse the XML, with a new Base
            base = prepared.base = _configured(request)
            base.fill_sack(load_system_repo=True)
    except dnf.exceptions.Error as exc:
        return fail("metadata", str(exc))
    answer["cached"] = seed.used() if seed is not None else []
    lap("load")
    if request["gpgkey"]:
        # After loading (libdnf re-reads rpm's configuration, which resets macros set before):
        # the transaction set dnf creates from here on requires signatures.
        rpm.addMacro("_pkgverify_level", "signature")
    try:
        for spec in request["packages"]:
            base.install(spec)
        base.resolve()
    except dnf.exceptions.Error as exc:
        return fail("resolve", str(exc))
    lap("resolve")
    pkgs = sorted(base.transaction.install_set)
    answer["installed"] = sorted(_nevra(p) for p in pkgs)
    try:
        base.download_packages(pkgs)
    except dnf.exceptions.Error as exc:
        # dnf only logs which files failed; name them (this path is rare, so checking again is cheap enough).
        damaged = [f"{p.localPkg()} does not match the checksum in primary.xml" for p in pkgs if not _verified(p)]
        return fail("download", *(damaged or [str(exc)]))
    lap("download")
    if request["gpgkey"]:
        try:
            jobs = max(1, int(request["jobs"]))
            problems = ([] if prepared.trusted else _import_keys(base, pkgs)) or _check_signatures(base, pkgs, jobs)
        except dnf.exceptions.Error as exc:
            problems = [str(exc)]
        if problems:
            return fail("signature", *problems)
        lap("signatures")
    if request["gpgkey"] and not base._ts.ts.getVfyLevel() & rpm.RPMSIG_SIGNATURE_TYPE:
        return fail("transaction", "rpm's transaction would not require signatures (%_pkgverify_level)")
    try:
        base.do_transaction()
    except dnf.exceptions.Error as exc:
        return fail("transaction", str(exc))
    finally:
        base.close()
    lap("transaction")
    return answer


def main() -> int:
    gc.freeze()  # dnf's gc.collect() per sack reset then skips the imports (see dnf_publish_helper)
    request = json.load(sys.stdin)
    fix_dbpath(Path(request["tmp"]) / "home")
    print(json.dumps(check(request)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
