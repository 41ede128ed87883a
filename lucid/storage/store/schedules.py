"""``backup_schedules``: backup schedule records, and the claim of a due run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from lucid.runtime.datastores import find_page

Record = dict[str, Any]


class ScheduleStore:
    """Schedule records (without MongoDB's ``_id``)."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self.collection = collection

    async def insert(self, record: Record) -> None:
        """Stores a new schedule."""
        await self.collection.insert_one(dict(record))

    async def page(self, *, offset: int, limit: int) -> tuple[list[Record], int]:
        """Schedules by creation, and how many there are."""
        return await find_page(
            self.collection,
            {},
            [("create_time", 1)],
            offset=offset,
            limit=limit,
            projection={"_id": 0},
        )

    async def delete(self, schedule_id: str) -> bool:
        """Deletes a schedule; whether it existed."""
        outcome = await self.collection.delete_one({"schedule_id": schedule_id})
        return bool(outcome.deleted_count)

    async def due(self, now: datetime) -> list[Record]:
        """Enabled schedules whose next run has come."""
        found = self.collection.find({"enabled": True, "next_run_time": {"$lte": now}}, {"_id": 0})
        return [record async for record in found]

    async def claim(self, record: Record, following: datetime, now: datetime) -> bool:
        """Moves a due schedule to its next run, unless another instance already did."""
        claimed = await self.collection.find_one_and_update(
            {"schedule_id": record["schedule_id"], "next_run_time": record["next_run_time"]},
            {"$set": {"next_run_time": following, "last_run_time": now}},
        )
        return claimed is not None

    async def ran(self, schedule_id: str, backup_id: str) -> None:
        """Records the backup a schedule's run started."""
        await self.collection.update_one(
            {"schedule_id": schedule_id}, {"$set": {"last_backup_id": backup_id}}
        )
