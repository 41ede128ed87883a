"""Audit events of the rdp cluster (``rdp_audit_logs``): who did what to which object."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from lucid.lib.ids import new_id
from lucid.rdp import schema


class AuditStore:
    """Appends and reads audit events. Never holds passwords or tokens."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._events = db[schema.AUDIT]

    async def append(
        self, when: datetime, action: str, actor: str, resource: str, detail: str = ""
    ) -> None:
        """Records one event."""
        await self._events.insert_one(
            {
                "_id": new_id(),
                "event_time": when,
                "action": action,
                "actor": actor,
                "resource": resource,
                "detail": detail,
            }
        )

    async def recent(self, action: str, limit: int = 50) -> list[dict[str, Any]]:
        """The latest events of one action."""
        cursor = self._events.find({"action": action}).sort([("event_time", DESCENDING)])
        return [doc async for doc in cursor.limit(limit)]
