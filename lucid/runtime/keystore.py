"""Secret keys sealed at rest, for every cluster that keeps some (auth, sessions, …).

A key is a document of the owning cluster's key collection: its id, what it is
for (``purpose``), the secret sealed with secretbox under an Argon2id-derived key
(``lucid.lib.sealing``), an optional public part to publish, and its life: the
newest ``active`` key of a purpose is the one new work uses; ``rotate`` retires
the active ones, which stay readable by id (and published until ``verify_until``)
so what they signed or sealed can still be checked or opened. Keys are made on
first use; ``generation`` is unique per purpose, so when two instances race to
make the first key (or to rotate) one wins and the other reads its key. Secrets
are unsealed in memory only, never logged or returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lucid.lib.clock import Clock
from lucid.lib.sealing import Sealer
from lucid.runtime.schema import CollectionSpec, IndexSpec

ACTIVE = "active"
RETIRED = "retired"

Maker = Callable[[], tuple[bytes, str]]
"""Makes a new key: its secret and its public part ("" for a symmetric key)."""


def collection_spec(name: str, owner: str) -> CollectionSpec:
    """The key collection ``name`` of cluster ``owner``, with the indexes the store uses."""
    return CollectionSpec(
        name,
        (
            IndexSpec((("key_id", 1),), "key_id_unique", unique=True),
            IndexSpec((("purpose", 1), ("generation", 1)), "purpose_generation", unique=True),
            IndexSpec((("purpose", 1), ("status", 1), ("created_at", -1)), "purpose_status"),
        ),
        owner=owner,
    )


class UnknownKeyError(LookupError):
    """No key is stored under an id."""


@dataclass(frozen=True)
class SealedKey:
    """A key with its id (the secret unsealed, in memory only)."""

    key_id: str
    purpose: str
    secret: bytes
    public: str
    created_at: datetime


@dataclass(frozen=True)
class PublishedKey:
    """The public part of a key whose work may still be checked."""

    key_id: str
    public: str
    created_at: datetime


class SealedKeyStore:
    """Creates, seals, rotates and loads one cluster's keys.

    ``current_ttl_s`` is how long the current key of a purpose is trusted from memory
    (``None``: for the life of the process, when nothing else rotates it).
    """

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        sealer: Sealer,
        clock: Clock,
        *,
        current_ttl_s: float | None = None,
    ) -> None:
        self._keys = collection
        self._sealer = sealer
        self._clock = clock
        self._ttl_s = current_ttl_s
        self._cache: dict[str, SealedKey] = {}
        self._current: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    def _load(self, doc: dict[str, Any]) -> SealedKey:
        key_id = str(doc["key_id"])
        if key_id not in self._cache:
            self._cache[key_id] = SealedKey(
                key_id=key_id,
                purpose=str(doc["purpose"]),
                secret=self._sealer.unseal(bytes(doc["sealed"])),
                public=str(doc.get("public", "")),
                created_at=doc["created_at"],
            )
        return self._cache[key_id]

    async def _newest(self, purpose: str) -> dict[str, Any] | None:
        return await self._keys.find_one({"purpose": purpose}, sort=[("generation", DESCENDING)])

    async def _add(self, purpose: str, generation: int, make: Maker) -> None:
        secret, public = make()
        now = self._clock.now()
        # another instance may have made this generation first: then theirs is used
        with contextlib.suppress(DuplicateKeyError):
            await self._keys.insert_one(
                {
                    "key_id": f"{purpose}-{now:%Y%m%d}-{secrets.token_hex(4)}",
                    "purpose": purpose,
                    "generation": generation,
                    "sealed": self._sealer.seal(secret),
                    "public": public,
                    "status": ACTIVE,
                    "created_at": now,
                    "verify_until": None,
                }
            )

    def _remember(self, doc: dict[str, Any]) -> SealedKey:
        key = self._load(doc)
        self._current[key.purpose] = (key.key_id, time.monotonic())
        return key

    async def current(self, purpose: str, make: Maker) -> SealedKey:
        """The key of ``purpose`` new work uses (made with ``make`` on first use)."""
        cached = self._current.get(purpose)
        if cached is not None and (
            self._ttl_s is None or time.monotonic() - cached[1] < self._ttl_s
        ):
            return self._cache[cached[0]]
        async with self._lock:
            doc = await self._newest(purpose)
            if doc is None or doc["status"] != ACTIVE:
                await self._add(purpose, int(doc["generation"]) + 1 if doc else 1, make)
                doc = await self._newest(purpose)
            assert doc is not None  # made just now, by this instance or another
            return self._remember(doc)

    async def rotate(self, purpose: str, make: Maker, *, verify_for_s: float) -> SealedKey:
        """Adds a new key of ``purpose``; the previous ones stay published ``verify_for_s``."""
        async with self._lock:
            newest = await self._newest(purpose)
            await self._keys.update_many(
                {"purpose": purpose, "status": ACTIVE},
                {
                    "$set": {
                        "status": RETIRED,
                        "verify_until": self._clock.now() + timedelta(seconds=verify_for_s),
                    }
                },
            )
            await self._add(purpose, int(newest["generation"]) + 1 if newest else 1, make)
            doc = await self._newest(purpose)
            assert doc is not None
            return self._remember(doc)

    async def by_id(self, key_id: str) -> SealedKey:
        """The key stored under ``key_id``, active or retired; raises ``UnknownKeyError``."""
        if key_id in self._cache:
            return self._cache[key_id]
        doc = await self._keys.find_one({"key_id": key_id})
        if doc is None:
            raise UnknownKeyError(key_id)
        return self._load(doc)

    async def published(self, purpose: str) -> list[PublishedKey]:
        """Public parts of the keys of ``purpose`` still to be trusted, newest first."""
        now = self._clock.now()
        found = self._keys.find(
            {
                "purpose": purpose,
                "$or": [{"status": ACTIVE}, {"verify_until": {"$gt": now}}],
            },
            sort=[("generation", DESCENDING)],
        )
        return [
            PublishedKey(str(doc["key_id"]), str(doc.get("public", "")), doc["created_at"])
            async for doc in found
        ]
