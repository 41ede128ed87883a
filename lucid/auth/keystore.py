"""The auth cluster's signing keys: Ed25519, sealed at rest, published as a JWKS.

The keys live in ``auth_signing_keys``, kept by the runtime's sealed key store
(``lucid.runtime.keystore``): a key's id is the tokens' ``kid``, its public part
the JWK's ``x``. New tokens are signed with the newest active key. Rotation adds
a key and retires the previous one, which stays in the JWKS until every token it
signed has expired (a refresh token's 7 days), so rotation never signs anyone out.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo.asynchronous.collection import AsyncCollection

from lucid.lib.clock import Clock
from lucid.lib.sealing import Sealer
from lucid.runtime.keystore import SealedKey, SealedKeyStore, collection_spec
from lucid.runtime.tokens import ALGORITHM, REFRESH_TTL_S, JwkDict

COLLECTION = "auth_signing_keys"
SCHEMA = collection_spec(COLLECTION, owner="auth")
PURPOSE = "token_signing"

CURRENT_KEY_TTL_S = 2.0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _make() -> tuple[bytes, str]:
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    raw_public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return raw_private, _b64url(raw_public)


@dataclass(frozen=True)
class SigningKey:
    """A key that signs tokens."""

    kid: str
    private_key: Ed25519PrivateKey


class SigningKeyStore:
    """Creates, rotates and publishes the token signing keys."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], sealer: Sealer, clock: Clock):
        # another auth instance's rotation is picked up within CURRENT_KEY_TTL_S (the
        # key it retired still verifies, so tokens signed meanwhile stay valid)
        self._store = SealedKeyStore(collection, sealer, clock, current_ttl_s=CURRENT_KEY_TTL_S)
        self._signers: dict[str, SigningKey] = {}

    def _signer(self, key: SealedKey) -> SigningKey:
        if key.key_id not in self._signers:
            private = Ed25519PrivateKey.from_private_bytes(key.secret)
            self._signers[key.key_id] = SigningKey(key.key_id, private)
        return self._signers[key.key_id]

    async def current(self) -> SigningKey:
        """The key new tokens are signed with (created on first use)."""
        return self._signer(await self._store.current(PURPOSE, _make))

    async def rotate(self) -> SigningKey:
        """Adds a new signing key; the previous ones verify until their tokens expire."""
        return self._signer(await self._store.rotate(PURPOSE, _make, verify_for_s=REFRESH_TTL_S))

    async def jwks(self) -> list[JwkDict]:
        """Public keys of every key whose tokens may still be alive, newest first."""
        return [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": key.public,
                "kid": key.key_id,
                "use": "sig",
                "alg": ALGORITHM,
            }
            for key in await self._store.published(PURPOSE)
        ]
