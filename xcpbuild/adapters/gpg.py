"""GnuPG: find signing keys, export public keys, make and check detached signatures.

Every call names its GnuPG home explicitly (``--homedir``), defaulting to
``$GNUPGHOME`` or ``~/.gnupg`` as gpg itself would. Only key ids, fingerprints
and public keys ever reach a log; secret material never leaves gpg. Verification
runs in a fresh temporary home holding only the public key we expect, so a
signature by any other key in the user's keyring cannot pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xcpbuild.adapters import owned
from xcpbuild.adapters.process import CommandFailed, require_tool, run, which
from xcpbuild.errors import SigningError
from xcpbuild.log import get_logger

log = get_logger("gpg")


@dataclass(frozen=True)
class SigningKey:
    """A secret key usable for signing: where it lives and its full fingerprint."""

    home: Path
    fingerprint: str

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


def find_secret_key(key_id: str, home: Path | None = None) -> SigningKey:
    """The secret key ``key_id`` (fingerprint, long/short id or user id) in ``home``, or SigningError."""
    home = home or default_home()
    if not home.is_dir():
        raise SigningError(f"GnuPG home {home} does not exist", hint="pass --gnupg-home DIR or set GNUPGHOME")
    gpg = require_tool("gpg")
    done = run([gpg, "--homedir", home, "--batch", "--with-colons", "--list-secret-keys", key_id], check=False)
    fingerprints = [line.split(":")[9] for line in done.stdout.splitlines() if line.startswith("fpr:")]
    if not done.ok or not fingerprints:
        raise SigningError(f"no secret key {key_id!r} in {home}")
    # The first fpr line belongs to the primary key, which is the one we sign with.
    return SigningKey(home, fingerprints[0])


def export_public_key(key: SigningKey, dest: Path) -> Path:
    """Write the ASCII-armoured public key to ``dest``."""
    out, _ = _gpg(key.home, ["--armor", "--export", key.fingerprint])
    if "BEGIN PGP PUBLIC KEY BLOCK" not in out:
        raise SigningError(f"could not export the public key of {key.fingerprint}")
    dest.write_text(out)
    return dest


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
    """Check ``signature`` over ``path`` against ``public_key`` only; return the signer's fingerprint."""
    with owned.tempdir("gpgv") as home:
        home.chmod(0o700)
        _gpg(home, ["--import", public_key])
        gpg = require_tool("gpg")
        done = run([gpg, "--homedir", home, "--batch", "--status-fd", "1", "--verify", signature, path], check=False)
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[:2] == ["[GNUPG:]", "VALIDSIG"]:
            return parts[2]
    raise SigningError(f"the signature {signature.name} does not verify {path.name} with the expected key")


def ensure_key(home: Path, uid: str) -> SigningKey:
    """The secret key ``uid`` in ``home``, generated (RSA, no passphrase) the first time.

    Used for a run's own signing key: kept in ``home`` so later runs sign with the
    same key and a repeated publish stays a no-op. The key never leaves ``home``.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    try:
        return find_secret_key(uid, home)
    except SigningError:
        pass
    log.info("generating the signing key %s in %s", uid, home)
    # RSA: EL7's rpm cannot verify EdDSA signatures.
    _gpg(home, ["--passphrase", "", "--quick-gen-key", uid, "rsa2048", "sign", "never"])
    return find_secret_key(uid, home)


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent that signing started for ``home``, so no daemon outlives the job."""
    gpgconf = which("gpgconf")
    if gpgconf is not None and home.is_dir():
        run([gpgconf, "--homedir", home, "--kill", "gpg-agent"], check=False, timeout=30)
