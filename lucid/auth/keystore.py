"""The auth cluster's signing keys: Ed25519, sealed at rest, published as a JWKS.

Each key is a document of ``auth_signing_keys``: its ``kid``, the public key and
the private key sealed with secretbox (Argon2id-derived key). New tokens are
signed with the newest active key. Rotation adds a key and retires the previous
one, which stays in the JWKS until every token it signed has expired (a refresh
token's 7 days), so rotation never signs anyone out.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from lucid.lib.clock import Clock
from lucid.lib.sealing import Sealer
from lucid.runtime.schema import CollectionSpec, IndexSpec
from lucid.runtime.tokens import ALGORITHM, REFRESH_TTL_S, JwkDict

COLLECTION = "auth_signing_keys"
SCHEMA = CollectionSpec(
    COLLECTION,
    (
        IndexSpec((("kid", 1),), "kid_unique", unique=True),
        IndexSpec((("status", 1), ("created_at", -1)), "status_created"),
    ),
    owner="auth",
)

CURRENT_KEY_TTL_S = 2.0
ACTIVE = "active"
RETIRED = "retired"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """A key that signs tokens."""

    kid: str
    private_key: Ed25519PrivateKey


class SigningKeyStore:
    """Creates, rotates and publishes the token signing keys."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], sealer: Sealer, clock: Clock):
        self._keys = collection
        self._sealer = sealer
        self._clock = clock
        self._cache: dict[str, SigningKey] = {}
        self._current: tuple[SigningKey, float] | None = None

    async def _create(self) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        raw_private = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        raw_public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        now = self._clock.now()
        kid = f"{now:%Y%m%d}-{secrets.token_hex(4)}"
        await self._keys.insert_one(
            {
                "kid": kid,
                "public_x": _b64url(raw_public),
                "private_sealed": self._sealer.seal(raw_private),
                "status": ACTIVE,
                "created_at": now,
                "verify_until": None,
            }
        )
        key = SigningKey(kid, private)
        self._cache[kid] = key
        self._current = (key, time.monotonic())
        return key

    async def current(self) -> SigningKey:
        """The key new tokens are signed with (created on first use).

        Read from the database at most every ``CURRENT_KEY_TTL_S``: another auth
        instance's rotation is picked up within that time (the key it retired
        still verifies, so tokens signed meanwhile stay valid).
        """
        if self._current is not None and time.monotonic() - self._current[1] < CURRENT_KEY_TTL_S:
            return self._current[0]
        doc = await self._keys.find_one({"status": ACTIVE}, sort=[("created_at", DESCENDING)])
        if doc is None:
            return await self._create()
        kid = doc["kid"]
        if kid not in self._cache:
            raw = self._sealer.unseal(bytes(doc["private_sealed"]))
            self._cache[kid] = SigningKey(kid, Ed25519PrivateKey.from_private_bytes(raw))
        self._current = (self._cache[kid], time.monotonic())
        return self._cache[kid]

    async def rotate(self) -> SigningKey:
        """Adds a new signing key; the previous ones verify until their tokens expire."""
        now = self._clock.now()
        await self._keys.update_many(
            {"status": ACTIVE},
            {
                "$set": {
                    "status": RETIRED,
                    "verify_until": now + timedelta(seconds=REFRESH_TTL_S),
                }
            },
        )
        return await self._create()

    async def jwks(self) -> list[JwkDict]:
        """Public keys of every key whose tokens may still be alive, newest first."""
        now: datetime = self._clock.now()
        keys: list[JwkDict] = []
        async for doc in self._keys.find(
            {"$or": [{"status": ACTIVE}, {"verify_until": {"$gt": now}}]},
            sort=[("created_at", DESCENDING)],
        ):
            keys.append(
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": doc["public_x"],
                    "kid": doc["kid"],
                    "use": "sig",
                    "alg": ALGORITHM,
                }
            )
        return keys
