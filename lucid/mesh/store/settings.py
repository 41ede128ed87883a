"""``mesh_settings``: the mTLS settings and circuit-breaker overrides, by key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from lucid.mesh import schema
from lucid.mesh.store import MessageT, from_doc, to_doc


@dataclass(frozen=True)
class Setting:
    """A stored setting and when it last changed (epoch seconds)."""

    value: Any
    updated_at: float


class SettingsStore:
    """Settings as proto messages under a key, with a version counting every change."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.collection = db[schema.SETTINGS]

    async def put(self, key: str, value: Any, updated_at: float) -> int:
        """Stores a value; returns the settings version after the change."""
        await self.collection.update_one(
            {"key": key},
            {"$set": {"value": to_doc(value), "updated_at": updated_at}},
            upsert=True,
        )
        counter = await self.collection.find_one_and_update(
            {"key": "_version"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(counter["value"]) if counter else 1

    async def get(self, key: str, cls: type[MessageT]) -> Setting | None:
        """One stored value with its ``updated_at``."""
        doc = await self.collection.find_one({"key": key}, {"_id": 0})
        return Setting(from_doc(doc["value"], cls), float(doc["updated_at"])) if doc else None

    async def prefixed(self, prefix: str, cls: type[MessageT]) -> list[MessageT]:
        """Every value whose key starts with ``prefix``, by key."""
        cursor = self.collection.find({"key": {"$regex": f"^{prefix}"}}, {"_id": 0})
        return [from_doc(doc["value"], cls) async for doc in cursor.sort("key", 1)]

    async def version(self) -> int:
        """How many changes the settings have seen."""
        counter = await self.collection.find_one({"key": "_version"})
        return int(counter["value"]) if counter else 0
