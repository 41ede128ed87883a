"""The sessions cluster's keys: chunk master keys and the manifest signing key.

Both are made on first use and kept in ``sessions_keys`` sealed at rest
(secretbox under an Argon2id key, ``lucid.lib.sealing``); they are never logged
or returned. A chunk master key has an id that travels in every blob header, so
keys can rotate: a blob is opened with the master key its header names. The
per-session chunk key derives from the master key (``blobformat.session_key``).
The manifest signing key is Ed25519; its public key is published in every
manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from typing import Any

import nacl.signing
from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lucid.lib.clock import Clock
from lucid.lib.sealing import Sealer
from lucid.sessions.blobformat import KEY_BYTES

CHUNK_MASTER = "chunk_master"
MANIFEST_SIGNING = "manifest_signing"


class UnknownKeyError(LookupError):
    """No key is stored under an id."""


@dataclass(frozen=True)
class StoredKey:
    """A key with its id (the secret part unsealed, in memory only)."""

    key_id: str
    secret: bytes


class KeyStore:
    """Creates, seals and loads the cluster's keys."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], sealer: Sealer, clock: Clock):
        self._keys = collection
        self._sealer = sealer
        self._clock = clock
        self._cache: dict[str, StoredKey] = {}
        self._current: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def _create(self, purpose: str, secret: bytes) -> None:
        key_id = f"{purpose.split('_', 1)[0]}-{secrets.token_hex(6)}"
        with contextlib.suppress(DuplicateKeyError):  # another instance made it first
            await self._keys.insert_one(
                {
                    "_id": f"{purpose}:initial",
                    "key_id": key_id,
                    "purpose": purpose,
                    "sealed": self._sealer.seal(secret),
                    "created_at": self._clock.now(),
                }
            )

    def _load(self, doc: dict[str, Any]) -> StoredKey:
        key_id = str(doc["key_id"])
        if key_id not in self._cache:
            secret = self._sealer.unseal(bytes(doc["sealed"]))
            self._cache[key_id] = StoredKey(key_id, secret)
        return self._cache[key_id]

    async def current(self, purpose: str) -> StoredKey:
        """The key of ``purpose`` new work uses (made on first use)."""
        key_id = self._current.get(purpose)
        if key_id is not None:
            return self._cache[key_id]
        async with self._lock:
            doc = await self._keys.find_one({"purpose": purpose}, sort=[("created_at", DESCENDING)])
            if doc is None:
                size = KEY_BYTES if purpose == CHUNK_MASTER else 32
                await self._create(purpose, secrets.token_bytes(size))
                doc = await self._keys.find_one(
                    {"purpose": purpose}, sort=[("created_at", DESCENDING)]
                )
            assert doc is not None
            key = self._load(doc)
            self._current[purpose] = key.key_id
            return key

    async def by_id(self, key_id: str) -> StoredKey:
        """The key stored under ``key_id``."""
        if key_id in self._cache:
            return self._cache[key_id]
        doc = await self._keys.find_one({"key_id": key_id})
        if doc is None:
            raise UnknownKeyError(key_id)
        return self._load(doc)

    async def master_key(self) -> StoredKey:
        """The chunk master key new chunks are sealed under."""
        return await self.current(CHUNK_MASTER)

    async def signing_key(self) -> nacl.signing.SigningKey:
        """The manifest signing key."""
        return nacl.signing.SigningKey((await self.current(MANIFEST_SIGNING)).secret)
