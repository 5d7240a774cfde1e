"""Sign RPMs with rpmsign and check their signatures with rpmkeys.

Publishing signs with ``rpmsig`` (no gpg process per signature); ``sign`` here is
its fallback for keys gpg-agent cannot use unattended, and the reference its
output is tested against.

Signing uses the macros Debian's rpm 4.18 understands: ``%_gpg_name`` (and
``%_openpgp_sign_id`` for newer rpm), ``%_gpg_path`` for the GnuPG home and
``%__gpg`` because Debian's default points at a ``gpg2`` that does not exist.
The digest is SHA-256, so EL7's rpm (XCP-ng 7.x/8.x hosts) can check it. rpmsign
adds the header+payload signature next to the header one when the package has
no payload digest, and with ``rpmv3`` (its ``--rpmv3``) always.

Checking imports only the expected public key into a temporary rpm database and
runs ``rpmkeys -Kv``: every package must carry a header signature by that key,
and every digest and signature line must say OK. A tampered payload, a stale
signature or a signature by another key all fail here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from xcpbuild.adapters import owned
from xcpbuild.adapters.gpg import SigningKey
from xcpbuild.adapters.process import CommandFailed, require_tool, run
from xcpbuild.errors import RpmError, SigningError
from xcpbuild.log import get_logger

log = get_logger("rpmsign")

# rpmsign handles many files per call; keep argv well under the kernel limit.
_BATCH = 200

_T = TypeVar("_T")


def _workers() -> int:
    """How many tool processes to run side by side: one per core this process may use."""
    return max(1, len(os.sched_getaffinity(0)))


def _batches(paths: Sequence[Path], workers: int) -> list[list[Path]]:
    """``paths`` cut into batches of at most _BATCH, at least ``workers`` of them when there are enough files."""
    size = max(1, min(_BATCH, -(-len(paths) // workers)))
    return [list(paths[start : start + size]) for start in range(0, len(paths), size)]


def _each_batch(paths: Sequence[Path], work: Callable[[list[Path]], _T]) -> list[_T]:
    """``work`` on every batch, one batch per core at a time; results in batch order.

    rpmsign and rpmkeys spend most of their time in gpg and digest work, one
    file after the other: side by side they use every core. The first failure
    is raised once the running batches have ended; batches not yet started
    are dropped, so nothing keeps running behind the caller.
    """
    workers = _workers()
    batches = _batches(paths, workers)
    if len(batches) <= 1 or workers == 1:
        return [work(batch) for batch in batches]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpmsign") as pool:
        futures = [pool.submit(work, batch) for batch in batches]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()


def sign(paths: Sequence[Path], key: SigningKey, *, rpmv3: bool = False) -> None:
    """Add (or replace) ``key``'s signatures on ``paths`` in place."""
    rpmsign = require_tool("rpmsign")
    gpg = require_tool("gpg")
    defines = {
        "_gpg_name": key.fingerprint,
        "_openpgp_sign_id": key.fingerprint,
        "_gpg_path": str(key.home),
        "__gpg": gpg,
        "_gpg_digest_algo": "sha256",
    }
    argv: list[str] = [rpmsign, "--addsign", *(["--rpmv3"] if rpmv3 else [])]
    for name, value in defines.items():
        argv += ["--define", f"{name} {value}"]

    def sign_batch(batch: list[Path]) -> None:
        try:
            run([*argv, *batch], env={"GNUPGHOME": str(key.home)})
        except CommandFailed as exc:
            raise SigningError(f"rpmsign could not sign with key {key.short_id}: {exc.message}") from exc

    _each_batch(paths, sign_batch)


@dataclass(frozen=True)
class SignatureProblem:
    path: Path
    detail: str


def check(paths: Sequence[Path], public_key: Path | None, key_short_id: str | None) -> list[SignatureProblem]:
    """Problems found by ``rpmkeys -Kv`` with only ``public_key`` trusted (empty list: all good).

    Without a key only the digests are checked (an unsigned publish still refuses
    a corrupted package). The key is trusted through rpm's file keyring (``%_keyring
    fs``: the key file in a directory of its own), one rpmkeys run per batch; only when
    that finds problems is the check made again the older way, with the key imported into
    a database of its own (an rpm without the file keyring finds no key at all), and
    that verdict is the one returned.
    """
    if not paths:
        return []
    rpmkeys = require_tool("rpmkeys")
    with owned.tempdir("rpmdb") as tmp:
        if public_key is not None:
            (tmp / "pubkeys").mkdir()
            shutil.copyfile(public_key, tmp / "pubkeys" / "publishing.key")
            keyring = ["--define", "_keyring fs", "--define", f"_keyringpath {tmp}/pubkeys/"]
            if not _checked(rpmkeys, [*keyring, "--dbpath", str(tmp / "unused")], paths, key_short_id):
                return []
            try:
                run([rpmkeys, "--dbpath", tmp / "db", "--import", public_key])
            except CommandFailed as exc:
                raise SigningError(f"rpmkeys could not import {public_key}: {exc.message}") from exc
            return _checked(rpmkeys, ["--dbpath", str(tmp / "db")], paths, key_short_id)
        return _checked(rpmkeys, ["--dbpath", str(tmp / "db"), "--nosignature"], paths, None)


def _checked(
    rpmkeys: str, options: list[str], paths: Sequence[Path], key_short_id: str | None
) -> list[SignatureProblem]:
    """``rpmkeys OPTIONS -Kv`` over ``paths`` in batches, each file judged by ``_parse``."""
    short_id = key_short_id.lower() if key_short_id else None

    def check_batch(batch: list[Path]) -> list[SignatureProblem]:
        done = run([rpmkeys, *options, "-Kv", *batch], check=False)
        return _parse(batch, done.stdout + done.stderr, short_id)

    problems: list[SignatureProblem] = []
    for found in _each_batch(paths, check_batch):
        problems += found
    return problems


def _parse(batch: list[Path], output: str, short_id: str | None) -> list[SignatureProblem]:
    """Split ``rpmkeys -Kv`` output per file and judge each one."""
    sections: dict[str, list[str]] = {str(p): [] for p in batch}
    current: str | None = None
    for raw in output.splitlines():
        line = raw.strip()
        if line.startswith(("warning:", "error:")):
            for name, collected in sections.items():
                if f"{name}:" in line:
                    collected.append(line)
        elif not raw[:1].isspace() and line.endswith(":"):  # "FILE:" opens a file's section
            current = line[:-1] if line[:-1] in sections else None
        elif current is not None:
            sections[current].append(line)
    problems: list[SignatureProblem] = []
    for path in batch:
        lines = sections[str(path)]
        bad = [ln for ln in lines if not ln.endswith(": OK")]
        signed_by_key = short_id is not None and any(
            "Header V4" in ln and f"key ID {short_id}: OK" in ln for ln in lines
        )
        if bad:
            problems.append(SignatureProblem(path, bad[0]))
        elif not lines:
            problems.append(SignatureProblem(path, "rpmkeys could not read it"))
        elif short_id is not None and not signed_by_key:
            problems.append(SignatureProblem(path, f"no header signature by key {short_id}"))
    return problems


def header_digest(paths: Sequence[Path]) -> dict[Path, str]:
    """SHA-256 of each package's main header: its content identity, unchanged by (re)signing.

    Packages built before rpm 4.14 have only the SHA-1 header digest; that is used then.
    """

    def query_batch(batch: list[Path]) -> dict[Path, str]:
        values = _query_digests(batch)
        if values is not None:
            return dict(zip(batch, values, strict=True))
        found = {}  # some file is unreadable: find which, one by one
        for path in batch:
            single = _query_digests([path])
            if single is None:
                raise RpmError(f"{path} is not a readable RPM package")
            found[path] = single[0]
        return found

    result: dict[Path, str] = {}
    for found in _each_batch(paths, query_batch):
        result.update(found)
    return result


def _query_digests(paths: list[Path]) -> list[str] | None:
    rpm = require_tool("rpm")
    done = run(
        [rpm, "-qp", "--nosignature", "--nodigest", "--qf", "%{SHA256HEADER} %{SHA1HEADER}\\n", *paths], check=False
    )
    lines = done.stdout.splitlines()
    if not done.ok or len(lines) != len(paths):
        return None
    values = []
    for line in lines:
        sha256, _, sha1 = line.strip().partition(" ")
        value = sha256 if len(sha256) == 64 else sha1
        if len(value) not in (40, 64):
            return None
        values.append(value)
    return values
