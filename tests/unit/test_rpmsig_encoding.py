"""The encodings behind rpmsig: RPM header layout, OpenPGP signature packets, the agent's answers.

Pure logic with a toy RSA key; that rpm and gpg read the result as their own
is checked with the real tools in tests/integration/test_rpmsig.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import struct
from pathlib import Path

import pytest

from xcpbuild.adapters import gpgagent, openpgp, rpmsig
from xcpbuild.errors import RpmError, SigningError


def _prime(rng: random.Random, bits: int) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (1 << (bits - 1)) | 1
        if all(pow(a, candidate - 1, candidate) == 1 for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)):
            return candidate


@pytest.fixture(scope="module")
def toy_rsa() -> tuple[int, int, int]:
    """(n, e, d) of a 640-bit RSA key: big enough for a SHA-256 PKCS#1 block, quick to make."""
    rng = random.Random(16)
    e = 65537
    while True:
        p, q = _prime(rng, 320), _prime(rng, 320)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            return p * q, e, pow(e, -1, phi)


def _entry(tag: int, kind: int, data: bytes, count: int | None = None) -> rpmsig.Entry:
    return rpmsig.Entry(tag, kind, count if count is not None else len(data), data)


def test_layout_reads_back_aligned_with_the_region_trailer_last() -> None:
    entries = [
        _entry(rpmsig.SIG_SIZE, 4, struct.pack(">I", 7), 1),
        _entry(rpmsig.SHA1HEADER, 6, b"abc\0", 1),
        _entry(rpmsig.SIG_RESERVEDSPACE, 7, bytes(10)),
        _entry(rpmsig.SIG_MD5, 7, bytes(range(16))),
    ]
    blob = rpmsig.layout(entries, rpmsig.REGION_SIGNATURES)
    header = rpmsig.read_header(blob, "test")
    assert [e.tag for e in header.entries] == [62, 269, 1000, 1004, 1008]  # region first, then by tag
    il, dl = struct.unpack(">II", blob[8:16])
    region = struct.unpack(">IIiI", blob[16:32])
    assert region == (62, 7, dl - 16, 16)
    store = blob[16 + 16 * il :]
    assert struct.unpack(">IIiI", store[dl - 16 :]) == (62, 7, -16 * il, 16)
    size_offset = struct.unpack(">IIiI", blob[16 + 32 : 16 + 48])[2]
    assert size_offset == 4 and size_offset % 4 == 0  # after "abc\0", already aligned
    assert header.int32(rpmsig.SIG_SIZE) == 7 and header.strings(rpmsig.SHA1HEADER) == ["abc"]
    assert [e.data for e in header.entries[1:]] == [e.data for e in sorted(entries, key=lambda e: e.tag)]


def test_int32_after_odd_string_is_padded() -> None:
    blob = rpmsig.layout([_entry(269, 6, b"ab\0", 1), _entry(1000, 4, struct.pack(">I", 9), 1)], 62)
    offset = struct.unpack(">IIiI", blob[16 + 32 : 16 + 48])[2]
    assert offset == 4  # three bytes of string, one of padding
    assert rpmsig.read_header(blob, "t").int32(1000) == 9


def _original_signature(reserved: int) -> rpmsig.Header:
    entries = [
        _entry(rpmsig.SHA256HEADER, 6, b"0" * 64 + b"\0", 1),
        _entry(rpmsig.RSAHEADER, 7, b"old header signature"),
        _entry(rpmsig.SIG_GPG, 7, b"old dsa package signature"),
        _entry(rpmsig.SIG_RESERVEDSPACE, 7, bytes(reserved)),
    ]
    return rpmsig.read_header(rpmsig.layout(entries, 62), "original")


def test_signature_header_replaces_old_signatures_and_keeps_the_size() -> None:
    original = _original_signature(4000)
    new = rpmsig.read_header(rpmsig.signature_header(original, b"H" * 287, b"P" * 288), "new")
    assert len(new.raw) == len(original.raw)
    tags = [e.tag for e in new.entries]
    assert tags == [62, rpmsig.RSAHEADER, rpmsig.SHA256HEADER, rpmsig.SIG_PGP, rpmsig.SIG_RESERVEDSPACE]
    assert new.get(rpmsig.RSAHEADER) == _entry(rpmsig.RSAHEADER, 7, b"H" * 287)
    assert new.get(rpmsig.SIG_PGP) == _entry(rpmsig.SIG_PGP, 7, b"P" * 288)
    # Smaller signatures than before: the reserved space grows back.
    again = rpmsig.read_header(rpmsig.signature_header(new, b"h", b"p"), "again")
    assert len(again.raw) == len(original.raw)


def test_signature_header_without_room_grows() -> None:
    original = _original_signature(100)
    new = rpmsig.signature_header(original, b"H" * 287, b"P" * 288)
    assert len(new) > len(original.raw)
    assert rpmsig.read_header(new, "new").get(rpmsig.SIG_RESERVEDSPACE) == _entry(1008, 7, bytes(100))


def _package(payload: bytes, *, payload_digest: str | None = None, size_delta: int = 0) -> tuple[bytes, bytes]:
    """A minimal package (lead, signature header, main header with an immutable region, payload)."""
    main_entries = [_entry(1000, 6, b"hello\0", 1)]
    main_entries.append(
        _entry(rpmsig.PAYLOADDIGEST, 8, (payload_digest or hashlib.sha256(payload).hexdigest()).encode() + b"\0", 1)
    )
    main_entries.append(_entry(rpmsig.PAYLOADDIGESTALGO, 4, struct.pack(">I", 8), 1))
    main = rpmsig.layout(main_entries, rpmsig.REGION_IMMUTABLE)
    sig = rpmsig.layout(
        [
            _entry(rpmsig.SHA256HEADER, 6, hashlib.sha256(main).hexdigest().encode() + b"\0", 1),
            _entry(rpmsig.SIG_SIZE, 4, struct.pack(">I", len(main) + len(payload) + size_delta), 1),
            _entry(rpmsig.SIG_RESERVEDSPACE, 7, bytes(4096)),
        ],
        rpmsig.REGION_SIGNATURES,
    )
    lead = b"\xed\xab\xee\xdb" + bytes(92)
    return lead + sig + bytes(-len(sig) % 8) + main + payload, main


def _read(data: bytes) -> tuple[rpmsig.Package, rpmsig._Digests]:
    src = io.BytesIO(data)
    pkg = rpmsig.read_package(src, Path("p.rpm"))
    return pkg, rpmsig._hash_package(src, pkg)


def test_digests_of_an_intact_package_pass() -> None:
    data, main = _package(b"payload" * 100)
    pkg, digests = _read(data)
    assert pkg.header.raw == main and pkg.payload_offset == len(data) - 700
    rpmsig.check_digests(pkg, digests, Path("p.rpm"))
    assert digests.package.digest() == hashlib.sha256(main + b"payload" * 100).digest()


@pytest.mark.parametrize(
    ("damage", "what"),
    [("payload", "payload digest"), ("header", "SHA-256 header digest"), ("size", "size")],
)
def test_damaged_package_is_refused(damage: str, what: str) -> None:
    payload = b"payload" * 100
    wrong = hashlib.sha256(b"other").hexdigest() if damage == "payload" else None
    data, _ = _package(payload, payload_digest=wrong, size_delta=1 if damage == "size" else 0)
    if damage == "header":
        at = data.index(b"hello")
        data = data[:at] + b"jello" + data[at + 5 :]
    pkg, digests = _read(data)
    with pytest.raises(SigningError, match=f"its {what} does not match"):
        rpmsig.check_digests(pkg, digests, Path("p.rpm"))


def test_not_an_rpm() -> None:
    with pytest.raises(RpmError, match="no RPM lead"):
        rpmsig.read_package(io.BytesIO(b"PK\x03\x04" + bytes(200)), Path("x.rpm"))
    with pytest.raises(RpmError, match="no header magic"):
        rpmsig.read_package(io.BytesIO(b"\xed\xab\xee\xdb" + bytes(200)), Path("x.rpm"))


def test_signature_packet_is_gpgs_shape_and_verifies(toy_rsa: tuple[int, int, int]) -> None:
    n, e, d = toy_rsa
    fingerprint = bytes(range(20))
    template = openpgp.SignatureTemplate(fingerprint, 0x6B36EC80)
    hashed = template.hashed_part
    assert hashed == bytes([4, 0, 1, 8, 0, 29, 22, 33, 4]) + fingerprint + bytes([5, 2]) + struct.pack(">I", 0x6B36EC80)
    assert template.trailer == hashed + b"\x04\xff" + struct.pack(">I", len(hashed))
    digest = hashlib.sha256(b"data" + template.trailer).digest()
    key = openpgp.RsaPublicKey(fingerprint.hex().upper(), n, e)
    s = pow(openpgp.pkcs1_block(digest, (n.bit_length() + 7) // 8), d, n)
    assert openpgp.verifies(key, digest, s)
    assert not openpgp.verifies(key, hashlib.sha256(b"other").digest(), s)
    assert not openpgp.verifies(key, digest, s ^ 1)
    packet = template.packet(digest, s)
    body = packet[2:] if packet[0] == 0x88 else packet[3:]
    assert packet[0] in (0x88, 0x89) and len(body) == (
        packet[1] if packet[0] == 0x88 else struct.unpack(">H", packet[1:3])[0]
    )
    unhashed = body[len(hashed) :]
    assert unhashed[:12] == b"\x00\x0a\x09\x10" + fingerprint[-8:]
    assert unhashed[12:14] == digest[:2]
    assert struct.unpack(">H", unhashed[14:16])[0] == s.bit_length()
    assert int.from_bytes(unhashed[16:], "big") == s


def test_packet_headers_and_mpis() -> None:
    assert openpgp._packet_header(2, 0xFF) == b"\x88\xff"
    assert openpgp._packet_header(2, 0x133) == b"\x89\x01\x33"
    assert openpgp._packet_header(2, 0x10000) == b"\x8a\x00\x01\x00\x00"
    assert openpgp._mpi(0x01FF) == b"\x00\x09\x01\xff"  # bit count of the value, no leading zero bytes


def _public_key_export(n: int, e: int, algo: int = 1) -> tuple[str, str]:
    def mpi(value: int) -> bytes:
        return struct.pack(">H", value.bit_length()) + value.to_bytes((value.bit_length() + 7) // 8, "big")

    body = bytes([4]) + struct.pack(">I", 1_700_000_000) + bytes([algo]) + mpi(n) + mpi(e)
    packet = bytes([0x99]) + struct.pack(">H", len(body)) + body  # old format, 2-byte length
    uid = b"\xb4\x04test"
    armoured = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: a header line\n\n"
    armoured += base64.b64encode(packet + uid).decode() + "\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
    return armoured, hashlib.sha1(packet).hexdigest().upper()


def test_rsa_public_key_from_an_export(toy_rsa: tuple[int, int, int]) -> None:
    n, e, _ = toy_rsa
    armoured, fingerprint = _public_key_export(n, e)
    assert openpgp.rsa_public_key(armoured) == openpgp.RsaPublicKey(fingerprint, n, e)
    assert openpgp.rsa_public_key(_public_key_export(n, e, algo=22)[0]) is None
    with pytest.raises(SigningError, match="not an ASCII-armoured"):
        openpgp.rsa_public_key("garbage")


def test_agent_answers_are_decoded() -> None:
    assert gpgagent._unescape(b"a%25b%0Ac%0D") == b"a%b\nc\r"
    assert gpgagent._rsa_value(b"(7:sig-val(3:rsa(1:s3:\x01\x02\x03)))") == 0x010203
    with pytest.raises(SigningError, match="other than an RSA signature"):
        gpgagent._rsa_value(b"(7:sig-val(5:eddsa(1:r32:...")
