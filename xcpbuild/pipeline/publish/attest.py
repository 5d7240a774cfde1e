"""Signed provenance inside each published generation, and its verification.

A signed publish gives each package whose build folder holds a
``provenance.json`` a DSSE envelope: the build's statement narrowed to that one
file, its sha256 now the published (signed) file's. That the published file is
the built one is checked first: signing leaves the RPM's main header alone, so
its header sha256 must be the one the build recorded. The envelope is signed
with the repository key (a detached gpg signature over DSSE's PAE encoding).

The provenance is part of the generation it arrives with, never shipped after
it: ``stage`` writes ``<NEVRA>.intoto.json`` and the signed index
``provenance.json`` (``provenance.json.asc``), which maps each file name to its
envelope and the envelope payload's sha256, into the generation's staged
``repodata/``, beside ``repomd.xml``. The one symlink swap that makes the
metadata live makes its provenance live with it, so no reader ever sees a
package without its provenance, and a rollback brings back the provenance of
the generation it serves. Each generation carries over (hard links) the
envelopes of the one before it. A package promoted from another channel takes
its statement from that channel's live provenance.

``verify`` takes an RPM (path or http(s) URL), finds the index beside its
repository's metadata (``../repodata/provenance.json``), and checks the index
signature, the envelope's payload against the index, the envelope signature,
the RPM's sha256 against the statement and, given a checkout, the project
files (package definition, spec template, patches).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcpbuild.adapters import gpg, rpmsign
from xcpbuild.errors import PublishError, SigningError, UsageError, VerifyError
from xcpbuild.log import get_logger
from xcpbuild.pipeline.build import provenance, record
from xcpbuild.pipeline.publish import repo as repolib

log = get_logger("attest")

PAYLOAD_TYPE = "application/vnd.in-toto+json"
INDEX = "provenance.json"  # in a generation's repodata/, beside repomd.xml
ENVELOPE_SUFFIX = ".intoto.json"
MAX_DOWNLOAD = 2 * 1024**3


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _sign_bytes(key: gpg.SigningKey, data: bytes, scratch: Path) -> str:
    message = scratch / "message"
    message.write_bytes(data)
    gpg.detach_sign(key, message, scratch / "message.asc")
    return (scratch / "message.asc").read_text()


def envelope(statement: dict[str, Any], key: gpg.SigningKey, scratch: Path) -> dict[str, Any]:
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    signature = _sign_bytes(key, pae(PAYLOAD_TYPE, payload), scratch)
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key.fingerprint, "sig": base64.b64encode(signature.encode()).decode()}],
    }


def _build_folder(rpm: Path) -> Path | None:
    """The build folder an artifact sits in (SRPMS/x.src.rpm, RPMS/noarch/x.rpm)."""
    for parent in list(rpm.resolve().parents)[:3]:
        if (parent / record.RECORD).is_file():
            return parent
    return None


def _envelope_name(nevra: str) -> str:
    return f"{nevra}{ENVELOPE_SUFFIX}"


def _load_index(repodata: Path | None) -> dict[str, Any]:
    path = repodata / INDEX if repodata is not None else None
    if path is None or not path.is_file():
        return {"entries": {}}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) and isinstance(data.get("entries"), dict) else {"entries": {}}


def _published_statement(rpm: Path, key: gpg.SigningKey) -> dict[str, Any] | None:
    """The statement a published ``rpm`` (REPODIR/Packages/F) has in its own live provenance (a promotion)."""
    repodata = rpm.resolve().parent.parent / "repodata"
    entry = _load_index(repodata)["entries"].get(rpm.name)
    if not entry:
        return None
    signed = json.loads((repodata / entry["envelope"]).read_text())
    payload = base64.b64decode(signed["payload"])
    if hashlib.sha256(payload).hexdigest() != entry["payload_sha256"]:
        raise PublishError(f"the provenance of {rpm} differs from its index", hint="its channel was changed by hand")
    sig = base64.b64decode(signed["signatures"][0]["sig"])
    _check_signature(key.public_key, pae(PAYLOAD_TYPE, payload), sig, f"the statement of {rpm}")
    statement: dict[str, Any] = json.loads(payload)
    return statement


def _statement(rpm: Path, key: gpg.SigningKey) -> dict[str, Any] | None:
    folder = _build_folder(rpm)
    if folder is not None:
        return provenance.load(folder)
    return _published_statement(rpm, key)


@dataclass
class ShipReport:
    written: list[str] = field(default_factory=list)  # envelope names written into this generation
    carried: int = 0  # envelopes kept from the generation before
    skipped: list[str] = field(default_factory=list)  # files without a build statement
    seconds_signing: float = 0.0


def stage(
    repo: repolib.RepoDir,
    rpms: Sequence[tuple[Path, str]],
    repodata: Path,
    previous: Path | None,
    *,
    generation: int,
    key: gpg.SigningKey,
) -> ShipReport:
    """Write generation ``generation``'s provenance into its staged ``repodata`` (nothing live changes).

    ``rpms``: (the file given to publish, its name in ``repo``'s packages dir), every one already
    placed there; ``previous``: the live generation's ``repodata``, whose envelopes are carried over.
    """
    index = _load_index(previous)
    entries: dict[str, Any] = index["entries"]
    kept = {name: e for name, e in entries.items() if previous is not None and (previous / e["envelope"]).is_file()}
    changed = len(kept) != len(entries)  # an envelope gone missing: its entry goes, the index is signed again
    index["entries"] = kept
    result = ShipReport()
    if previous is not None:
        result.carried = _carry(previous, repodata, [entry["envelope"] for entry in kept.values()])
    with tempfile.TemporaryDirectory(prefix="xcpbuild-attest-") as tmp:
        scratch = Path(tmp)
        for given, name in rpms:
            statement = _statement(given, key)
            subject = next((s for s in (statement or {}).get("subject", []) if s["name"] == name), None)
            if statement is None or subject is None:
                result.skipped.append(name)
                continue
            published = repo.packages_dir / name
            digest = provenance.sha256_file(published)
            entry = index["entries"].get(name)
            if entry and entry.get("rpm_sha256") == digest and (repodata / entry["envelope"]).is_file():
                continue  # carried over for this very file
            header = rpmsign.header_digest([published])[published]
            if header != subject["digest"][provenance.HEADER_DIGEST]:
                raise PublishError(
                    f"{published} is not the file its build made (header sha256 {header[:12]}…, the build recorded "
                    f"{subject['digest'][provenance.HEADER_DIGEST][:12]}…)",
                    hint="nothing was published; rebuild and publish again",
                )
            shipped = dict(statement, subject=[{**subject, "digest": {**subject["digest"], "sha256": digest}}])
            started = time.monotonic()
            signed = envelope(shipped, key, scratch)
            result.seconds_signing += time.monotonic() - started
            relative = _envelope_name(subject["nevra"])
            _write(repodata / relative, json.dumps(signed, indent=2) + "\n")
            index["entries"][name] = {
                "nevra": subject["nevra"],
                "envelope": relative,
                "payload_sha256": hashlib.sha256(base64.b64decode(signed["payload"])).hexdigest(),
                "rpm_sha256": digest,
                "generation": generation,
                "repo": repo.kind,
            }
            result.written.append(relative)
        if result.written or changed:
            text = json.dumps(index, indent=2, sort_keys=True) + "\n"
            _write(repodata / f"{INDEX}.asc", _sign_bytes(key, text.encode(), scratch))
            _write(repodata / INDEX, text)
        elif previous is not None and (previous / INDEX).is_file():
            _carry(previous, repodata, [INDEX, f"{INDEX}.asc"])
    return result


def _carry(previous: Path, repodata: Path, names: Sequence[str]) -> int:
    """Hard-link the previous generation's files ``names`` into the staged ``repodata`` (copies across devices)."""
    for name in names:
        try:
            os.link(previous / name, repodata / name)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.copy2(previous / name, repodata / name)
    return len(names)


def _write(path: Path, text: str) -> None:
    """Write a staged file durably: it goes live by the swap, never before it is whole on disk."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    repolib.fsync_file(partial)
    partial.replace(path)


# --- verification -----------------------------------------------------------------------------


@dataclass
class ProvenanceCheck:
    rpm: str
    nevra: str = ""
    signer: str = ""
    checked: list[str] = field(default_factory=list)  # what was compared and matched


def _is_url(where: str) -> bool:
    return urllib.parse.urlsplit(where).scheme in ("http", "https")


def _fetch(where: str) -> bytes:
    if _is_url(where):
        try:
            with urllib.request.urlopen(where, timeout=60) as response:  # http(s) only: checked by _is_url
                return bytes(response.read(MAX_DOWNLOAD))
        except (urllib.error.URLError, OSError) as exc:
            raise VerifyError(f"cannot fetch {where}: {exc}") from exc
    try:
        return Path(where).read_bytes()
    except OSError as exc:
        raise VerifyError(f"cannot read {where}: {exc.strerror}") from exc


def _index_location(rpm: str) -> str:
    """REPODIR/repodata/provenance.json for REPODIR/Packages/F (x86_64/Packages, Source/SPackages)."""
    if _is_url(rpm):
        return urllib.parse.urljoin(rpm, f"../repodata/{INDEX}")
    # The live generation's own directory: the index and its envelopes are read from one generation.
    return str((Path(rpm).resolve().parent.parent / "repodata").resolve() / INDEX)


def _sibling(index: str, relative: str) -> str:
    if _is_url(index):
        return urllib.parse.urljoin(index, relative)
    return str(Path(index).parent / relative)


def _check_signature(public_key: Path, data: bytes, armored: bytes, what: str) -> str:
    with tempfile.TemporaryDirectory(prefix="xcpbuild-attest-") as tmp:
        message, signature = Path(tmp, "message"), Path(tmp, "message.asc")
        message.write_bytes(data)
        signature.write_bytes(armored)
        try:
            return gpg.verify_detached(public_key, message, signature)
        except SigningError as exc:
            raise VerifyError(
                f"the signature of {what} does not verify with {public_key.name}",
                hint="it was changed after signing, or signed by another key",
            ) from exc


def verify(rpm: str, public_key: Path, *, checkout: Path | None = None, index: str | None = None) -> ProvenanceCheck:
    """Check ``rpm`` against its signed provenance; VerifyError names the first thing that differs."""
    if not public_key.is_file():
        raise UsageError(f"--key {public_key} is not a file", hint="the repository's public key (armoured)")
    name = Path(urllib.parse.urlsplit(rpm).path).name if _is_url(rpm) else Path(rpm).name
    index_at = index or _index_location(rpm)
    index_bytes = _fetch(index_at)
    _check_signature(public_key, index_bytes, _fetch(index_at + ".asc"), f"the provenance index {index_at}")
    entries = json.loads(index_bytes).get("entries", {})
    if name not in entries:
        raise VerifyError(f"the provenance index {index_at} has no entry for {name}")
    entry = entries[name]
    check = ProvenanceCheck(rpm=name, nevra=entry["nevra"])
    check.checked.append("index signature")
    signed = json.loads(_fetch(_sibling(index_at, entry["envelope"])))
    payload = base64.b64decode(signed["payload"])
    if hashlib.sha256(payload).hexdigest() != entry["payload_sha256"]:
        raise VerifyError(
            f"the statement {entry['envelope']} differs from the one the index signed "
            f"(payload sha256 {hashlib.sha256(payload).hexdigest()[:12]}…, index {entry['payload_sha256'][:12]}…)"
        )
    check.checked.append("statement digest")
    if signed.get("payloadType") != PAYLOAD_TYPE or not signed.get("signatures"):
        raise VerifyError(f"{entry['envelope']} is not a signed in-toto DSSE envelope")
    sig = base64.b64decode(signed["signatures"][0]["sig"])
    check.signer = _check_signature(public_key, pae(PAYLOAD_TYPE, payload), sig, f"the statement {entry['envelope']}")
    check.checked.append("statement signature")
    statement = json.loads(payload)
    subject = next((s for s in statement.get("subject", []) if s.get("name") == name), None)
    if subject is None:
        raise VerifyError(f"the statement does not name {name} as its subject")
    actual = hashlib.sha256(_fetch(rpm)).hexdigest()
    if actual != subject["digest"]["sha256"]:
        raise VerifyError(
            f"{name}: the RPM's sha256 {actual} differs from the statement's {subject['digest']['sha256']}",
            hint="the package was changed after it was published",
        )
    check.checked.append("RPM sha256")
    if checkout is not None:
        files = statement["predicate"]["buildDefinition"]["externalParameters"].get("projectFiles", {})
        if not files:
            raise VerifyError("the statement records no project files to compare with a checkout")
        for relative, recorded in sorted(files.items()):
            path = checkout / relative
            if not path.is_file():
                raise VerifyError(f"{relative} is missing from the checkout {checkout}")
            digest = provenance.sha256_file(path)
            if digest != recorded:
                raise VerifyError(
                    f"{relative} differs from what the build used: sha256 {digest[:12]}… in {checkout}, "
                    f"{recorded[:12]}… in the statement"
                )
            check.checked.append(relative)
    return check
