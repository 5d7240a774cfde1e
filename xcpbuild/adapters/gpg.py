"""GnuPG: find signing keys, export public keys, make and check detached signatures.

Every call names its GnuPG home explicitly (``--homedir``), defaulting to
``$GNUPGHOME`` or ``~/.gnupg`` as gpg itself would. Only key ids, fingerprints
and public keys ever reach a log; secret material never leaves gpg. Verification
runs in a fresh temporary home holding only the public key we expect, so a
signature by any other key in the user's keyring cannot pass.

A key is resolved once, where the user names it (``named_key``) or where a run
makes its own (``ensure_key``), into a ``SigningKey`` that carries its exported
public key; everything downstream signs and verifies with that object.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.adapters import openpgp, owned
from xcpbuild.adapters.process import CommandFailed, require_tool, run, which
from xcpbuild.errors import SigningError
from xcpbuild.log import get_logger

log = get_logger("gpg")


@dataclass(frozen=True)
class SigningKey:
    """A secret key usable for signing: where it lives, its full fingerprint, its public key."""

    home: Path
    fingerprint: str
    public_key: Path  # ASCII-armoured, exported when the key was resolved: what verification trusts

    @property
    def short_id(self) -> str:
        """The 8-hex-digit id rpm prints (``key ID e7e377c2``)."""
        return self.fingerprint[-8:].lower()


def default_home() -> Path:
    env = os.environ.get("GNUPGHOME")
    return Path(env) if env else Path.home() / ".gnupg"


def _gpg(home: Path, args: Sequence[str | os.PathLike[str]]) -> tuple[str, str]:
    gpg = require_tool("gpg")
    try:
        done = run([gpg, "--homedir", home, "--batch", "--no-tty", *args])
    except CommandFailed as exc:
        raise SigningError(f"gpg failed: {exc.message}") from exc
    return done.stdout, done.stderr


def _fingerprint(key_id: str, home: Path) -> str:
    """The fingerprint of the secret key ``key_id`` (fingerprint, long/short id or user id), or SigningError."""
    if not home.is_dir():
        raise SigningError(f"GnuPG home {home} does not exist", hint="pass --gnupg-home DIR or set GNUPGHOME")
    gpg = require_tool("gpg")
    done = run([gpg, "--homedir", home, "--batch", "--with-colons", "--list-secret-keys", key_id], check=False)
    fingerprints = [line.split(":")[9] for line in done.stdout.splitlines() if line.startswith("fpr:")]
    if not done.ok or not fingerprints:
        raise SigningError(f"no secret key {key_id!r} in {home}")
    # The first fpr line belongs to the primary key, which is the one we sign with.
    return fingerprints[0]


def _export_public_key(home: Path, fingerprint: str, dest: Path) -> Path:
    """Write the ASCII-armoured public key to ``dest``."""
    out, _ = _gpg(home, ["--armor", "--export", fingerprint])
    if "BEGIN PGP PUBLIC KEY BLOCK" not in out:
        raise SigningError(f"could not export the public key of {fingerprint}")
    dest.write_text(out)
    return dest


def resolve_key(key_id: str, home: Path | None, public_key: Path) -> SigningKey:
    """The secret key ``key_id`` in ``home`` (default: GNUPGHOME), its public key exported to ``public_key``."""
    home = home or default_home()
    fingerprint = _fingerprint(key_id, home)
    return SigningKey(home, fingerprint, _export_public_key(home, fingerprint, public_key))


@contextlib.contextmanager
def named_key(key_id: str, home: Path | None = None) -> Iterator[SigningKey]:
    """The key the user named (``--sign-key``/``--gnupg-home``), its public key in a temporary file."""
    with owned.tempdir("key") as tmp:
        yield resolve_key(key_id, home, tmp / "signing-key.asc")


def detach_sign(key: SigningKey, path: Path, signature: Path) -> Path:
    """Write an armoured detached signature of ``path`` to ``signature`` (like repomd.xml.asc)."""
    _gpg(
        key.home,
        [
            "--yes",
            "--armor",
            "--digest-algo",
            "SHA256",
            "--local-user",
            key.fingerprint,
            "--output",
            signature,
            "--detach-sign",
            path,
        ],
    )
    return signature


def verify_detached(public_key: Path, path: Path, signature: Path) -> str:
    """Check ``signature`` over ``path`` against ``public_key`` only; return the signer's fingerprint.

    gpgv with a keyring holding that key alone: one process, no keybox to import into, no agent.
    """
    gpgv = require_tool("gpgv")
    with owned.tempdir("gpgv") as home:
        home.chmod(0o700)
        keyring = home / "key.gpg"
        raw = public_key.read_bytes()
        armoured = raw.lstrip().startswith(b"-----BEGIN PGP")
        keyring.write_bytes(openpgp.dearmor(raw.decode("ascii", "replace")) if armoured else raw)
        argv: list[str | os.PathLike[str]] = [gpgv, "--homedir", home, "--keyring", keyring, "--status-fd", "1"]
        argv += [signature, path]
        done = run(argv, check=False)
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[:2] == ["[GNUPG:]", "VALIDSIG"]:
            return parts[2]
    raise SigningError(f"the signature {signature.name} does not verify {path.name} with the expected key")


def ensure_key(home: Path, uid: str, public_key: Path) -> SigningKey:
    """The secret key ``uid`` in ``home``, generated (RSA, no passphrase) the first time.

    Used for a run's own signing key: kept in ``home`` so later runs sign with the
    same key and a repeated publish stays a no-op. The secret key never leaves
    ``home``; its public key is exported to ``public_key``.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    try:
        fingerprint = _fingerprint(uid, home)
    except SigningError:
        log.info("generating the signing key %s in %s", uid, home)
        # RSA: EL7's rpm cannot verify EdDSA signatures.
        _gpg(home, ["--passphrase", "", "--quick-gen-key", uid, "rsa2048", "sign", "never"])
        fingerprint = _fingerprint(uid, home)
    return SigningKey(home, fingerprint, _export_public_key(home, fingerprint, public_key))


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent that signing started for ``home``, so no daemon outlives the job."""
    gpgconf = which("gpgconf")
    if gpgconf is not None and home.is_dir():
        run([gpgconf, "--homedir", home, "--kill", "gpg-agent"], check=False, timeout=30)
