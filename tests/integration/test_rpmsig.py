"""rpmsig against rpm's and gpg's own reading: real rpmbuild packages, real gpg-agent, rpmsign as the reference."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.fixtures.rpms import make_rpm, make_srpm
from xcpbuild.adapters import gpg, gpgagent, openpgp, process, rpmsig, rpmsign
from xcpbuild.errors import SigningError


@pytest.fixture(scope="module")
def tools() -> None:
    need_tool("rpmbuild", "rpmsign", "rpmkeys", "rpm", "gpg", "gpg-agent")


@pytest.fixture(scope="module")
def key(tools: None, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    made = make_key(tmp_path_factory.mktemp("key"))
    yield made
    stop_agent(made)


@pytest.fixture(scope="module")
def other_key(tools: None, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    made = make_key(tmp_path_factory.mktemp("otherkey"), uid="someone else <other@example.invalid>")
    yield made
    stop_agent(made)


@pytest.fixture(scope="module")
def packages(tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("rpms")
    return {"binary": make_rpm(d, "hello", "1.0", "1"), "source": make_srpm(d, "hello", "1.0", "1")}


def copy(source: Path, dest_dir: Path, name: str | None = None) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (name or source.name)
    shutil.copyfile(source, dest)
    return dest


def rpmsign_at(path: Path, key: GpgTestKey, created: int, *, rpmv3: bool = True) -> None:
    """What ``rpmsign.sign`` runs, with gpg's clock frozen at ``created`` so the signatures are comparable."""
    frozen = time.strftime("%Y%m%dT%H%M%S", time.gmtime(created)) + "!"
    defines = {
        "_gpg_name": key.fingerprint,
        "_openpgp_sign_id": key.fingerprint,
        "_gpg_path": str(key.home),
        "__gpg": shutil.which("gpg"),
        "_gpg_digest_algo": "sha256",
        "_gpg_sign_cmd_extra_args": f"--faked-system-time {frozen}",
    }
    argv = ["rpmsign", "--addsign", *(["--rpmv3"] if rpmv3 else [])]
    for name, value in defines.items():
        argv += ["--define", f"{name} {value}"]
    subprocess.run([*argv, str(path)], check=True, capture_output=True)


def rpmkeys_lines(path: Path, public_key: Path, tmp: Path) -> list[str]:
    """``rpmkeys -Kv`` of ``path`` with only ``public_key`` imported: the per-signature lines."""
    db = tmp / f"db-{path.name}-{time.monotonic_ns()}"
    db.mkdir()
    subprocess.run(["rpmkeys", "--dbpath", str(db), "--import", str(public_key)], check=True)
    done = subprocess.run(["rpmkeys", "--dbpath", str(db), "-Kv", str(path)], capture_output=True, text=True)
    return [line.strip() for line in done.stdout.splitlines()[1:]]


def query(path: Path, fmt: str) -> str:
    done = subprocess.run(["rpm", "-qp", "--nosignature", "--qf", fmt, str(path)], capture_output=True, text=True)
    return done.stdout


def packets(path: Path) -> dict[int, bytes]:
    with open(path, "rb") as src:
        pkg = rpmsig.read_package(src, path)
    return {e.tag: e.data for e in pkg.signature.entries if e.tag in (rpmsig.RSAHEADER, rpmsig.SIG_PGP)}


def list_packets(packet: bytes, tmp: Path) -> str:
    home = tmp / f"listhome-{time.monotonic_ns()}"
    home.mkdir(mode=0o700)
    file = home / "sig.bin"
    file.write_bytes(packet)
    done = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--list-packets", str(file)], capture_output=True, text=True
    )
    return done.stdout


def without_payload_digest(source: Path, dest: Path) -> Path:
    """``source`` as rpm before 4.14 built packages: no payload digest in its header, digests to match.

    The main header is laid out again without the payload digest tags, and the
    signature header's header digests, MD5 and size are recomputed, so rpm and
    rpmsign read it as an intact legacy package.
    """
    with open(source, "rb") as src:
        pkg = rpmsig.read_package(src, source)
        payload = src.read()
    dropped = (rpmsig.PAYLOADDIGEST, rpmsig.PAYLOADDIGESTALGO, rpmsig.PAYLOADDIGESTALT)
    header = rpmsig.layout([e for e in pkg.header.entries if e.tag not in dropped], rpmsig.REGION_IMMUTABLE)
    replaced = {
        rpmsig.SHA256HEADER: hashlib.sha256(header).hexdigest().encode() + b"\0",
        rpmsig.SHA1HEADER: hashlib.sha1(header).hexdigest().encode() + b"\0",
        rpmsig.SIG_MD5: hashlib.md5(header + payload).digest(),
        rpmsig.SIG_SIZE: struct.pack(">I", len(header) + len(payload)),
    }
    entries = [
        dataclasses.replace(e, data=replaced[e.tag]) if e.tag in replaced else e
        for e in pkg.signature.entries
        if e.tag not in (rpmsig.RSAHEADER, rpmsig.SIG_PGP)
    ]
    signature = rpmsig.layout(entries, rpmsig.REGION_SIGNATURES)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(pkg.lead + signature + bytes(-len(signature) % 8) + header + payload)
    return dest


@pytest.mark.parametrize("rpmv3", [False, True], ids=["default", "rpmv3"])
@pytest.mark.parametrize("kind", ["binary", "source"])
def test_signatures_are_rpmsigns_own_byte_for_byte(
    tmp_path: Path, key: GpgTestKey, packages: dict[str, Path], kind: str, rpmv3: bool
) -> None:
    created = int(time.time()) + 60
    reference = copy(packages[kind], tmp_path / "rpmsign")
    ours = copy(packages[kind], tmp_path / "rpmsig")
    rpmsign_at(reference, key, created, rpmv3=rpmv3)
    rpmsig.sign([ours], key, created=created, rpmv3=rpmv3)
    # Same packets (RSA PKCS#1 v1.5 is deterministic), same header layout, same reserved space: the same file.
    assert ours.read_bytes() == reference.read_bytes()
    assert ours.stat().st_size == packages[kind].stat().st_size
    # These packages carry a payload digest: the header+payload signature is there only when asked for.
    assert set(packets(ours)) == ({rpmsig.RSAHEADER, rpmsig.SIG_PGP} if rpmv3 else {rpmsig.RSAHEADER})
    # And rpm says the same of both, field by field.
    lines = rpmkeys_lines(ours, key.public_key, tmp_path)
    assert lines == rpmkeys_lines(reference, key.public_key, tmp_path)
    assert f"Header V4 RSA/SHA256 Signature, key ID {key.short_id}: OK" in lines
    assert (f"V4 RSA/SHA256 Signature, key ID {key.short_id}: OK" in lines) is rpmv3
    assert all(line.endswith(": OK") for line in lines)


def test_package_without_payload_digest_gets_both_signatures_as_from_rpmsign(
    tmp_path: Path, key: GpgTestKey, packages: dict[str, Path]
) -> None:
    """rpm's own rule: a package built before rpm 4.14 (CentOS 7's rpmbuild) gets the header+payload one too."""
    legacy = without_payload_digest(packages["binary"], tmp_path / "legacy" / packages["binary"].name)
    assert rpmkeys_lines(legacy, key.public_key, tmp_path)  # rpm reads the crafted package
    assert all(line.endswith(": OK") for line in rpmkeys_lines(legacy, key.public_key, tmp_path))
    created = int(time.time()) + 90
    reference = copy(legacy, tmp_path / "rpmsign")
    ours = copy(legacy, tmp_path / "rpmsig")
    rpmsign_at(reference, key, created, rpmv3=False)
    rpmsig.sign([ours], key, created=created)
    assert set(packets(reference)) == {rpmsig.RSAHEADER, rpmsig.SIG_PGP}
    assert ours.read_bytes() == reference.read_bytes()
    lines = rpmkeys_lines(ours, key.public_key, tmp_path)
    assert f"V4 RSA/SHA256 Signature, key ID {key.short_id}: OK" in lines
    assert rpmsign.check([ours], key.public_key, key.short_id) == []


def test_packets_read_by_gpg_as_gpg_writes_them(tmp_path: Path, key: GpgTestKey, packages: dict[str, Path]) -> None:
    """What EL7's rpm parses: the OpenPGP fields, compared with rpmsign+gpg's on the same file."""
    created = int(time.time()) + 120
    reference = copy(packages["binary"], tmp_path / "rpmsign")
    ours = copy(packages["binary"], tmp_path / "rpmsig")
    rpmsign_at(reference, key, created)
    rpmsig.sign([ours], key, created=created, rpmv3=True)
    theirs, mine = packets(reference), packets(ours)
    assert set(mine) == {rpmsig.RSAHEADER, rpmsig.SIG_PGP}
    for tag in mine:
        listing = list_packets(mine[tag], tmp_path)
        assert listing == list_packets(theirs[tag], tmp_path)
        assert f"algo 1, keyid {key.fingerprint[-16:]}" in listing
        assert "digest algo 8" in listing and "sigclass 0x00" in listing and "version 4" in listing
        assert f"hashed subpkt 33 len 21 (issuer fpr v4 {key.fingerprint})" in listing
        assert "hashed subpkt 2 len 4 (sig created" in listing
        assert f"subpkt 16 len 8 (issuer key ID {key.fingerprint[-16:]})" in listing
    # rpm's own formatter names our key for both signatures.
    shown = query(ours, "%{RSAHEADER:pgpsig}\n%{SIGPGP:pgpsig}\n").splitlines()
    assert len(shown) == 2
    assert all(
        line.startswith("RSA/SHA256, ") and line.endswith(f"Key ID {key.fingerprint[-16:].lower()}") for line in shown
    )


def test_resigning_replaces_the_signatures(
    tmp_path: Path, key: GpgTestKey, other_key: GpgTestKey, packages: dict[str, Path]
) -> None:
    path = copy(packages["binary"], tmp_path)
    size = path.stat().st_size
    rpmsig.sign([path], other_key, rpmv3=True)
    rpmsig.sign([path], key)
    rpmsig.sign([path], key)
    with open(path, "rb") as src:
        tags = [e.tag for e in rpmsig.read_package(src, path).signature.entries]
    # Replaced, not added to: other_key's header+payload signature is gone with its header signature.
    assert tags.count(rpmsig.RSAHEADER) == 1 and tags.count(rpmsig.SIG_PGP) == 0
    assert path.stat().st_size == size
    assert rpmsign.check([path], key.public_key, key.short_id) == []
    problems = rpmsign.check([path], other_key.public_key, other_key.short_id)
    assert problems and "NOKEY" in problems[0].detail
    # rpmsign re-signs what we signed, and we re-sign what rpmsign signed.
    rpmsign.sign([path], other_key)
    assert rpmsign.check([path], other_key.public_key, other_key.short_id) == []
    rpmsig.sign([path], key)
    assert rpmsign.check([path], key.public_key, key.short_id) == []
    assert path.stat().st_size == size


def test_the_check_trusts_the_key_through_rpms_file_keyring_and_confirms_refusals_the_old_way(
    tmp_path: Path, key: GpgTestKey, other_key: GpgTestKey, packages: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rpmkeys run for packages that verify; a refusal is what rpmkeys says with the key imported."""
    path = copy(packages["binary"], tmp_path)
    rpmsig.sign([path], key)
    runs: list[list[str]] = []

    def spying(argv: list[object], **kwargs: object) -> object:
        runs.append([str(a) for a in argv])
        return process.run(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rpmsign, "run", spying)
    assert rpmsign.check([path], key.public_key, key.short_id) == []
    assert len(runs) == 1 and "_keyring fs" in runs[0] and "-Kv" in runs[0]
    runs.clear()
    problems = rpmsign.check([path], other_key.public_key, other_key.short_id)
    assert problems and "NOKEY" in problems[0].detail
    assert ["--import" in argv for argv in runs] == [False, True, False]  # fs keyring, import, the verdict


def test_tampered_package_fails_and_is_never_signed(tmp_path: Path, key: GpgTestKey, packages: dict[str, Path]) -> None:
    signed = copy(packages["binary"], tmp_path / "signed")
    rpmsig.sign([signed], key)
    data = bytearray(signed.read_bytes())
    data[-10] ^= 0xFF  # inside the compressed payload
    signed.write_bytes(bytes(data))
    problems = rpmsign.check([signed], key.public_key, key.short_id)
    assert problems and "BAD" in problems[0].detail
    # A damaged package is refused before anything is signed, and left as it was.
    with pytest.raises(SigningError, match=r"not signing hello-1\.0-1\.noarch\.rpm: its payload digest does not match"):
        rpmsig.sign([signed], key)
    assert signed.read_bytes() == bytes(data)
    assert list(signed.parent.iterdir()) == [signed]  # no temporary file left beside it


def test_sign_copies_writes_new_files_and_leaves_the_sources(
    tmp_path: Path, key: GpgTestKey, packages: dict[str, Path]
) -> None:
    source = copy(packages["binary"], tmp_path / "in")
    before = source.read_bytes()
    dest = tmp_path / "out" / source.name
    dest.parent.mkdir()
    rpmsig.sign_copies([source], [dest], key)
    assert source.read_bytes() == before
    assert rpmsign.check([dest], key.public_key, key.short_id) == []
    with pytest.raises(FileExistsError):  # never over an existing file
        rpmsig.sign_copies([source], [dest], key)


def test_many_packages_over_several_sessions(tmp_path: Path, key: GpgTestKey, packages: dict[str, Path]) -> None:
    paths = [copy(packages["binary"], tmp_path, f"copy-{i}.rpm") for i in range(12)]
    rpmsig.sign(paths, key)
    assert rpmsign.check(paths, key.public_key, key.short_id) == []


def _gpg_key(home: Path, uid: str, algo: str, passphrase: str) -> gpg.SigningKey:
    home.mkdir(mode=0o700)
    batch = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase]
    subprocess.run(
        [*batch, "--quick-gen-key", uid, algo, "sign", "never"],
        check=True,
        capture_output=True,
    )
    return gpg.resolve_key(uid, home, home.parent / f"{home.name}.asc")


def test_non_rsa_key_falls_back_to_rpmsign(
    tmp_path: Path, packages: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    key = _gpg_key(tmp_path / "ed", "ed <ed@example.invalid>", "ed25519", "")
    try:
        assert gpgagent.rsa_signer(key) == "the key is not RSA (OpenPGP algorithm 22)"
        path = copy(packages["binary"], tmp_path / "rpms")
        with caplog.at_level(logging.INFO, logger="xcpbuild"):
            rpmsig.sign([path], key)
        assert "signing 1 package(s) with rpmsign, one gpg process per signature: the key is not RSA" in caplog.text
        lines = rpmkeys_lines(path, key.public_key, tmp_path)
        assert f"Header V4 EdDSA/SHA256 Signature, key ID {key.short_id}: OK" in lines
    finally:
        gpg.stop_agent(key.home)


def test_passphrase_protected_key_is_left_to_gpg(tmp_path: Path) -> None:
    key = _gpg_key(tmp_path / "pp", "pp <pp@example.invalid>", "rsa2048", "a passphrase")
    try:
        assert gpgagent.rsa_signer(key) == "the secret key is passphrase-protected (gpg asks for it)"
        # The agent session itself never prompts: a sign request fails instead of waiting for a person.
        public = openpgp.rsa_public_key(key.public_key.read_text())
        assert public is not None
        listing = subprocess.run(
            ["gpg", "--homedir", str(key.home), "--with-colons", "--with-keygrip", "--list-secret-keys"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        grip = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("grp:"))
        agent_key = gpgagent.AgentKey(key.home, grip, public)
        with gpgagent.AgentSession(agent_key) as session, pytest.raises(SigningError, match="gpg-agent refused"):
            session.sign([bytes(32)])
    finally:
        gpg.stop_agent(key.home)
