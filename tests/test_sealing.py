"""Secrets at rest: secretbox under an Argon2id key."""

from __future__ import annotations

import pytest

from lucid.lib.sealing import Sealer, SealError


def test_round_trip_and_fresh_salt_per_seal() -> None:
    sealer = Sealer("correct horse")
    one, two = sealer.seal(b"key material"), sealer.seal(b"key material")
    assert one != two
    assert b"key material" not in one
    assert sealer.unseal(one) == sealer.unseal(two) == b"key material"


def test_wrong_passphrase_or_altered_blob_is_refused() -> None:
    blob = Sealer("right").seal(b"secret")
    with pytest.raises(SealError):
        Sealer("wrong").unseal(blob)
    altered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SealError):
        Sealer("right").unseal(altered)
    with pytest.raises(SealError):
        Sealer("right").unseal(b"not sealed at all")


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(ValueError, match="passphrase"):
        Sealer("")
