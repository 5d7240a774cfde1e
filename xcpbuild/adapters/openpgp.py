"""OpenPGP v4 signature packets (RSA, SHA-256), built the way gpg builds them, and RSA public keys read from an export.

Pure encoding (RFC 4880): nothing here holds or sees secret material. A signer
elsewhere turns the digest this module asks for into the RSA value ``s``; this
module wraps it into the packet gpg itself would write for a binary document
signature: hashed subpackets issuer fingerprint (33) then creation time (2),
unhashed issuer key id (16), old-format packet header with the shortest length.
``verifies`` checks ``s`` against the public key, as gpg checks every signature
it makes before it hands it out.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from xcpbuild.errors import SigningError

SIG_BINARY = 0x00
ALGO_RSA = 1
HASH_SHA256 = 8
# DER DigestInfo prefix of a SHA-256 hash (RFC 8017, section 9.2): what PKCS#1 v1.5 signs.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_TAG_SIGNATURE = 2
_TAG_PUBLIC_KEY = 6
_SUB_CREATED, _SUB_ISSUER, _SUB_ISSUER_FPR = 2, 16, 33


@dataclass(frozen=True)
class RsaPublicKey:
    """A v4 RSA primary key: what a signature is checked against (public numbers only)."""

    fingerprint: str  # 40 hex digits, upper case as gpg prints it
    n: int
    e: int

    @property
    def key_id(self) -> bytes:
        return bytes.fromhex(self.fingerprint[-16:])


def _subpacket(kind: int, body: bytes) -> bytes:
    length = len(body) + 1
    assert length < 192  # every subpacket here is short: one-byte length
    return bytes([length, kind]) + body


@dataclass(frozen=True)
class SignatureTemplate:
    """Everything of a signature packet but the signature itself: what is hashed after the data."""

    fingerprint: bytes  # 20 bytes
    created: int  # seconds since the epoch

    @property
    def hashed_part(self) -> bytes:
        """Version, class, algorithms and the hashed subpackets: hashed, and written as is."""
        subpackets = _subpacket(_SUB_ISSUER_FPR, b"\x04" + self.fingerprint) + _subpacket(
            _SUB_CREATED, struct.pack(">I", self.created)
        )
        return bytes([4, SIG_BINARY, ALGO_RSA, HASH_SHA256]) + struct.pack(">H", len(subpackets)) + subpackets

    @property
    def trailer(self) -> bytes:
        """What goes into the hash after the signed data (RFC 4880, 5.2.4)."""
        hashed = self.hashed_part
        return hashed + b"\x04\xff" + struct.pack(">I", len(hashed))

    def packet(self, digest: bytes, s: int) -> bytes:
        """The whole signature packet, given the final ``digest`` and the RSA signature value ``s``."""
        unhashed = _subpacket(_SUB_ISSUER, self.fingerprint[-8:])
        body = self.hashed_part + struct.pack(">H", len(unhashed)) + unhashed + digest[:2] + _mpi(s)
        return _packet_header(_TAG_SIGNATURE, len(body)) + body


def _mpi(value: int) -> bytes:
    bits = value.bit_length()
    return struct.pack(">H", bits) + value.to_bytes((bits + 7) // 8, "big")


def _packet_header(tag: int, length: int) -> bytes:
    """Old-format header with the shortest length field, as gpg writes signature packets."""
    if length < 0x100:
        return bytes([0x80 | tag << 2, length])
    if length < 0x10000:
        return bytes([0x80 | tag << 2 | 1]) + struct.pack(">H", length)
    return bytes([0x80 | tag << 2 | 2]) + struct.pack(">I", length)


def pkcs1_block(digest: bytes, modulus_bytes: int) -> int:
    """The EMSA-PKCS1-v1_5 encoding of a SHA-256 ``digest``, as the integer a valid signature raises to."""
    info = _SHA256_DIGEST_INFO + digest
    padding = modulus_bytes - len(info) - 3
    if padding < 8:
        raise SigningError("the RSA key is too small for a SHA-256 signature")
    return int.from_bytes(b"\x00\x01" + b"\xff" * padding + b"\x00" + info, "big")


def verifies(key: RsaPublicKey, digest: bytes, s: int) -> bool:
    """Whether ``s`` is ``key``'s PKCS#1 v1.5 signature of the SHA-256 ``digest``."""
    return 0 < s < key.n and pow(s, key.e, key.n) == pkcs1_block(digest, (key.n.bit_length() + 7) // 8)


def dearmor(text: str) -> bytes:
    """The binary packets of an ASCII-armoured block (the checksum line is not needed to parse)."""
    lines = text.strip().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN PGP")) + 1
    except StopIteration:
        raise SigningError("not an ASCII-armoured OpenPGP block") from None
    while start < len(lines) and lines[start].strip():  # armour headers end at the first empty line
        start += 1
    body = []
    for line in lines[start + 1 :]:
        if line.startswith(("=", "-----END")):
            break
        body.append(line.strip())
    return base64.b64decode("".join(body))


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, body) of each packet in ``data`` (old and new format headers; no partial lengths)."""
    out = []
    pos = 0
    while pos < len(data):
        ctb = data[pos]
        if not ctb & 0x80:
            raise SigningError("malformed OpenPGP data")
        if ctb & 0x40:  # new format
            tag = ctb & 0x3F
            first = data[pos + 1]
            if first < 192:
                length, pos = first, pos + 2
            elif first < 224:
                length, pos = ((first - 192) << 8) + data[pos + 2] + 192, pos + 3
            elif first == 255:
                length, pos = struct.unpack(">I", data[pos + 2 : pos + 6])[0], pos + 6
            else:
                raise SigningError("partial-length OpenPGP packets are not expected in a key export")
        else:
            tag, kind = (ctb >> 2) & 0x0F, ctb & 3
            size = {0: 1, 1: 2, 2: 4}.get(kind)
            if size is None:
                raise SigningError("indeterminate-length OpenPGP packets are not expected in a key export")
            length = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
            pos += 1 + size
        out.append((tag, data[pos : pos + length]))
        pos += length
    return out


def rsa_public_key(armoured: str) -> RsaPublicKey | None:
    """The primary key of an exported public key if it is a v4 RSA key (None otherwise)."""
    packets = _packets(dearmor(armoured))
    if not packets or packets[0][0] != _TAG_PUBLIC_KEY:
        raise SigningError("the exported public key does not start with a public-key packet")
    body = packets[0][1]
    if body[0] != 4 or body[5] not in (1, 3):  # v4, RSA (sign+encrypt or sign-only)
        return None
    pos = 6
    numbers = []
    for _ in range(2):
        bits = struct.unpack(">H", body[pos : pos + 2])[0]
        size = (bits + 7) // 8
        numbers.append(int.from_bytes(body[pos + 2 : pos + 2 + size], "big"))
        pos += 2 + size
    fingerprint = hashlib.sha1(b"\x99" + struct.pack(">H", len(body)) + body).hexdigest().upper()
    return RsaPublicKey(fingerprint, numbers[0], numbers[1])
