"""The emergency log's repository (``admin_emergency_logs``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from lucid.admin.schema import EMERGENCY_LOGS
from lucid.runtime.errors import ErrorCode, LucidError


@dataclass(frozen=True)
class EmergencyLogRecord:
    """One emergency action."""

    log_id: str
    action: str
    reason: str
    user_id: str
    event_time: datetime
    status: str
    details: dict[str, Any]

    @classmethod
    def of(cls, doc: dict[str, Any]) -> EmergencyLogRecord:
        """The record of a stored document."""
        values = {k: v for k, v in doc.items() if k != "_id"}
        return cls(log_id=doc["_id"], **values)


class EmergencyLogStore:
    """``admin_emergency_logs``."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db[EMERGENCY_LOGS]

    async def add(self, record: EmergencyLogRecord) -> None:
        """Stores one log."""
        doc = asdict(record)
        doc["_id"] = doc.pop("log_id")
        try:
            await self.collection.insert_one(doc)
        except PyMongoError as exc:
            raise LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"logs: {exc}") from exc

    async def page(
        self, action: str, offset: int, limit: int
    ) -> tuple[list[EmergencyLogRecord], int]:
        """A page of logs, newest first, and how many match."""
        query = {"action": action} if action else {}
        try:
            total = await self.collection.count_documents(query)
            cursor = (
                self.collection.find(query)
                .sort([("event_time", DESCENDING)])
                .skip(offset)
                .limit(limit)
            )
            return [EmergencyLogRecord.of(doc) async for doc in cursor], total
        except PyMongoError as exc:
            raise LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"logs: {exc}") from exc
