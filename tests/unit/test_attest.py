"""DSSE's pre-authentication encoding, which the provenance signature covers."""

from __future__ import annotations

from xcpbuild.pipeline.publish import attest


def test_dsse_pae_is_the_specified_encoding() -> None:
    assert attest.pae("application/vnd.in-toto+json", b"{}") == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
    assert attest.pae("", b"") == b"DSSEv1 0  0 "
