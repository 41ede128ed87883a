"""``storage_volumes``, ``storage_volume_operations`` and ``storage_volume_samples``:
volume records, migration records and usage samples (records without ``_id``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lucid.runtime.datastores import find_page
from lucid.storage.schema import VOLUME_OPERATIONS, VOLUME_SAMPLES, VOLUMES

Record = dict[str, Any]


class VolumeNameTakenError(Exception):
    """Another volume has this name."""


def _clean(found: Record | None) -> Record | None:
    if found is not None:
        found.pop("_id", None)
    return found


class VolumeStore:
    """Volume, operation and sample records."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.records = db[VOLUMES]
        self.operations = db[VOLUME_OPERATIONS]
        self.samples = db[VOLUME_SAMPLES]

    async def register(self, name: str, fields: Record, mount_path: str) -> Record:
        """The volume named ``name``, recorded with ``fields`` if it was not yet; its
        mount path set either way."""
        found = await self.records.find_one_and_update(
            {"name": name},
            {"$setOnInsert": fields, "$set": {"mount_path": mount_path}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert found is not None  # upserted
        return _clean(found) or found

    async def insert(self, record: Record) -> None:
        """Stores a new volume; raises ``VolumeNameTakenError`` for a taken name."""
        try:
            await self.records.insert_one(dict(record))
        except DuplicateKeyError as exc:
            raise VolumeNameTakenError(record["name"]) from exc

    async def get(self, volume_id: str) -> Record | None:
        """One volume."""
        return await self.records.find_one({"volume_id": volume_id}, {"_id": 0})

    async def all(self) -> list[Record]:
        """Every volume."""
        return [record async for record in self.records.find({}, {"_id": 0})]

    async def page(self, *, state: str | None, offset: int, limit: int) -> tuple[list[Record], int]:
        """Volumes (of one state) by name, and how many match."""
        query: Record = {"state": state} if state else {}
        return await find_page(
            self.records, query, [("name", 1)], offset=offset, limit=limit, projection={"_id": 0}
        )

    async def update(self, where: Record, changes: Record) -> Record | None:
        """Changes the volume matching ``where``; raises ``VolumeNameTakenError``."""
        try:
            found = await self.records.find_one_and_update(
                where, {"$set": changes}, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError as exc:
            raise VolumeNameTakenError(str(changes.get("name", ""))) from exc
        return _clean(found)

    async def delete(self, volume_id: str) -> None:
        """Removes a volume record."""
        await self.records.delete_one({"volume_id": volume_id})

    async def add_sample(self, volume_id: str, when: datetime, used_bytes: int) -> None:
        """Records one usage sample."""
        await self.samples.insert_one(
            {"volume_id": volume_id, "sample_time": when, "used_bytes": used_bytes}
        )

    async def samples_since(self, volume_id: str, since: datetime) -> list[tuple[datetime, int]]:
        """Usage samples from ``since`` on, oldest first."""
        cursor = self.samples.find(
            {"volume_id": volume_id, "sample_time": {"$gte": since}},
            sort=[("sample_time", 1)],
        )
        return [(s["sample_time"], int(s["used_bytes"])) async for s in cursor]

    async def add_operation(self, operation: Record) -> None:
        """Stores a new migration record."""
        await self.operations.insert_one(dict(operation))

    async def set_operation(self, operation_id: str, changes: Record) -> None:
        """Changes a migration record."""
        await self.operations.update_one({"operation_id": operation_id}, {"$set": changes})

    async def operation(self, operation_id: str) -> Record | None:
        """One migration record."""
        return await self.operations.find_one({"operation_id": operation_id}, {"_id": 0})
