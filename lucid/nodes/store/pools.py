"""Pools (``node_pools``): groups of nodes with a size limit and a reward split."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from lucid.nodes.store import Doc, from_doc, to_doc, translated


@dataclass(frozen=True)
class PoolRecord:
    """A stored pool."""

    pool_id: str
    name: str
    max_nodes: int
    created_at: datetime
    updated_at: datetime
    description: str = ""
    reward_split: int = 0
    resource_limits: dict[str, Any] = field(default_factory=dict)
    scaling_policy: dict[str, Any] = field(default_factory=dict)
    activated_at: datetime | None = None
    """When 3 members were first active (from then on, fewer make it degraded)."""


class PoolStore:
    """Reads and writes pools."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._c = collection

    async def insert(self, record: PoolRecord) -> None:
        """Adds a pool; ``DuplicateError`` when the name is taken."""
        with translated():
            await self._c.insert_one(to_doc(record, "pool_id"))

    async def get(self, pool_id: str) -> PoolRecord | None:
        """A pool by id."""
        with translated():
            doc = await self._c.find_one({"_id": pool_id})
        return from_doc(PoolRecord, doc, "pool_id") if doc else None

    async def update(self, pool_id: str, changes: Doc) -> PoolRecord | None:
        """Sets fields; the updated pool or None."""
        with translated():
            doc = await self._c.find_one_and_update(
                {"_id": pool_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
            )
        return from_doc(PoolRecord, doc, "pool_id") if doc else None

    async def delete(self, pool_id: str) -> bool:
        """Removes a pool."""
        with translated():
            result = await self._c.delete_one({"_id": pool_id})
        return result.deleted_count == 1

    async def list(self, offset: int, limit: int) -> tuple[list[PoolRecord], int]:
        """A page of pools (oldest first) and how many there are."""
        with translated():
            total = await self._c.count_documents({})
            cursor = self._c.find({}).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
            docs = await cursor.skip(offset).limit(limit).to_list(None)
        return [from_doc(PoolRecord, d, "pool_id") for d in docs], total
