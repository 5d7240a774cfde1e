"""Signing digests with gpg-agent over a long-lived Assuan session, so a signature costs no process.

``gpg-agent --server`` is the agent itself, talking Assuan on a pipe: it reads
the secret key from the GnuPG home's key store and signs the digest it is given
(SIGKEY, SETHASH, PKSIGN); the key never leaves it. One such agent per worker,
rather than connections to the daemon behind the agent socket: the daemon's
threads are nPth's, which run one at a time, so one daemon signs on one core,
and an RSA-2048 signature by libgcrypt costs about 6-7 ms of CPU (measured:
the agent's share of a package's two signatures is ~13.6 ms).

``rsa_signer`` decides whether a key can be used this way without a person at
the keyboard (an RSA primary key with its secret on disk, no passphrase, no
signing subkey that gpg would pick instead) and says why not otherwise; the
caller then signs the old way, through gpg.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote_to_bytes

from xcpbuild.adapters import openpgp
from xcpbuild.adapters.gpg import SigningKey
from xcpbuild.adapters.process import run, stop_group, which
from xcpbuild.errors import SigningError
from xcpbuild.log import get_logger

log = get_logger("gpgagent")

_STOP_SECONDS = 5.0


@dataclass(frozen=True)
class AgentKey:
    """A key the agent can sign with unattended: its GnuPG home, keygrip and public numbers."""

    home: Path
    keygrip: str
    public: openpgp.RsaPublicKey


def rsa_signer(key: SigningKey) -> AgentKey | str:
    """``key`` as an AgentKey, or the reason the agent cannot sign with it unattended."""
    gpg, agent = which("gpg"), which("gpg-agent")
    if gpg is None or agent is None:
        return "gpg-agent is not installed"
    done = run(
        [
            gpg,
            "--homedir",
            key.home,
            "--batch",
            "--with-colons",
            "--with-keygrip",
            "--list-secret-keys",
            key.fingerprint,
        ],
        check=False,
    )
    if not done.ok:
        return "gpg could not list the secret key"
    rows = [line.split(":") for line in done.stdout.splitlines()]
    primary = next((row for row in rows if row[0] == "sec"), None)
    grip = next((row[9] for row in rows if row[0] == "grp"), None)  # the first grp line follows sec's fpr
    if primary is None or grip is None or len(primary) < 15:
        return "gpg did not describe the secret key"
    if primary[3] not in ("1", "3"):
        return f"the key is not RSA (OpenPGP algorithm {primary[3]})"
    if primary[1] in ("e", "r", "d", "i"):
        return "the key is expired, revoked or invalid"
    if "s" not in primary[11]:
        return "the primary key cannot sign"
    if any(row[0] == "ssb" and len(row) > 11 and "s" in row[11] for row in rows):
        return "the key has a signing subkey (gpg chooses which key signs)"
    if primary[14] != "+":
        return "the secret key is not on disk (offline primary or smartcard)"
    public = openpgp.rsa_public_key(key.public_key.read_text())
    if public is None or public.fingerprint != key.fingerprint.upper():
        return "the exported public key is not the v4 RSA key that signs"
    agent_key = AgentKey(key.home, grip, public)
    with AgentSession(agent_key) as session:
        protection = session.protection()
    if protection != "C":
        return "the secret key is passphrase-protected (gpg asks for it)"
    return agent_key


class AgentSession:
    """One ``gpg-agent --server`` process and its Assuan session; ``sign`` turns digests into RSA values.

    Nothing is ever prompted (pinentry-mode cancel): a key that would need a
    passphrase makes PKSIGN fail instead. The process runs in its own group and
    is stopped, whatever happens, when the session ends.
    """

    def __init__(self, key: AgentKey) -> None:
        self.key = key
        agent = which("gpg-agent")
        if agent is None:
            raise SigningError("gpg-agent is not installed")
        self._proc = subprocess.Popen(
            [agent, "--homedir", str(key.home), "--server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._response()  # the greeting
            self._command("OPTION pinentry-mode=cancel")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b"BYE\n")
                proc.stdin.close()
                proc.wait(timeout=_STOP_SECONDS)
            except (OSError, subprocess.TimeoutExpired):
                stop_group(proc)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    def protection(self) -> str:
        """How the key is stored: ``C`` clear, ``P`` passphrase-protected, ``-`` unknown."""
        lines = self._command(f"KEYINFO {self.key.keygrip}")[1]
        fields = next((line.split() for line in lines if line.startswith("KEYINFO ")), [])
        return fields[6] if len(fields) > 6 else "-"

    def sign(self, digests: list[bytes]) -> list[int]:
        """The RSA signature value of each SHA-256 digest (PKCS#1 v1.5), every one checked with the public key.

        The requests are written at once and the agent answers them in order,
        so a package's signatures cost one round trip.
        """
        request = b"".join(
            f"SIGKEY {self.key.keygrip}\nSETHASH --hash=sha256 {digest.hex()}\nPKSIGN\n".encode() for digest in digests
        )
        self._write(request)
        values = []
        for digest in digests:
            self._response()
            self._response()
            data, _ = self._response()
            value = _rsa_value(data)
            if not openpgp.verifies(self.key.public, digest, value):
                raise SigningError("gpg-agent returned a signature that the public key does not verify")
            values.append(value)
        return values

    def _write(self, data: bytes) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(data)
            stdin.flush()
        except OSError as exc:
            raise SigningError(f"gpg-agent went away: {exc.strerror}") from exc

    def _command(self, line: str) -> tuple[bytes, list[str]]:
        self._write(line.encode() + b"\n")
        return self._response()

    def _response(self) -> tuple[bytes, list[str]]:
        """Read up to OK: the D data (unescaped) and the S status lines; ERR becomes SigningError."""
        stdout = self._proc.stdout
        assert stdout is not None
        data = bytearray()
        status: list[str] = []
        while True:
            line = stdout.readline()
            if not line:
                raise SigningError("gpg-agent ended the session unexpectedly")
            line = line.rstrip(b"\n")
            if line == b"OK" or line.startswith(b"OK "):
                return bytes(data), status
            if line.startswith(b"D "):
                data += _unescape(line[2:])
            elif line.startswith(b"S "):
                status.append(line[2:].decode(errors="replace"))
            elif line.startswith(b"ERR"):
                raise SigningError(f"gpg-agent refused: {line[4:].decode(errors='replace')}")
            elif line.startswith(b"INQUIRE"):  # nothing here answers questions: cancel, ERR follows
                self._write(b"CAN\n")
            elif not line.startswith(b"#"):
                raise SigningError(f"unexpected answer from gpg-agent: {line[:80]!r}")


def _unescape(raw: bytes) -> bytes:
    """Assuan's percent escapes undone (%25, %0A, %0D and any other the sender chose)."""
    return unquote_to_bytes(raw) if b"%" in raw else raw


def _rsa_value(sexp: bytes) -> int:
    """``s`` from the agent's canonical S-expression ``(7:sig-val(3:rsa(1:sNNN:...)))``."""
    prefix = b"(7:sig-val(3:rsa(1:s"
    if not sexp.startswith(prefix):
        raise SigningError("gpg-agent answered with something other than an RSA signature")
    pos = len(prefix)
    colon = sexp.index(b":", pos)
    length = int(sexp[pos:colon])
    return int.from_bytes(sexp[colon + 1 : colon + 1 + length], "big")
