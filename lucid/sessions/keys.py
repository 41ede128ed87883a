"""The sessions cluster's keys: chunk master keys and the manifest signing key.

Both are made on first use and kept in ``sessions_keys`` by the runtime's sealed
key store (``lucid.runtime.keystore``); they are never logged or returned. A chunk
master key has an id that travels in every blob header, so keys can rotate: a blob
is opened with the master key its header names. The per-session chunk key derives
from the master key (``blobformat.session_key``). The manifest signing key is
Ed25519; its public key is published in every manifest.
"""

from __future__ import annotations

import secrets
from typing import Any

import nacl.signing
from pymongo.asynchronous.collection import AsyncCollection

from lucid.lib.clock import Clock
from lucid.lib.sealing import Sealer
from lucid.runtime.keystore import SealedKey, SealedKeyStore, UnknownKeyError
from lucid.sessions.blobformat import KEY_BYTES

CHUNK_MASTER = "chunk_master"
MANIFEST_SIGNING = "manifest_signing"

__all__ = ["KeyStore", "UnknownKeyError"]


def _master() -> tuple[bytes, str]:
    return secrets.token_bytes(KEY_BYTES), ""


def _signing() -> tuple[bytes, str]:
    seed = secrets.token_bytes(32)
    return seed, nacl.signing.SigningKey(seed).verify_key.encode().hex()


class KeyStore:
    """The cluster's chunk master keys and manifest signing key."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], sealer: Sealer, clock: Clock):
        self._store = SealedKeyStore(collection, sealer, clock)

    async def by_id(self, key_id: str) -> SealedKey:
        """The key stored under ``key_id``; raises ``UnknownKeyError``."""
        return await self._store.by_id(key_id)

    async def master_key(self) -> SealedKey:
        """The chunk master key new chunks are sealed under."""
        return await self._store.current(CHUNK_MASTER, _master)

    async def signing_key(self) -> nacl.signing.SigningKey:
        """The manifest signing key."""
        return nacl.signing.SigningKey(
            (await self._store.current(MANIFEST_SIGNING, _signing)).secret
        )
