"""RDP sessions (``rdp_sessions``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from lucid.rdp import schema
from lucid.rdp.records import SessionRecord


@dataclass(frozen=True)
class SessionFilter:
    """Which sessions (empty fields match any)."""

    user_id: str = ""
    server_id: str = ""
    states: Sequence[str] = ()
    created_before: datetime | None = None
    active_before: datetime | None = None
    """Last client activity before this time."""

    def query(self) -> dict[str, Any]:
        """The MongoDB query."""
        query: dict[str, Any] = {}
        for name in ("user_id", "server_id"):
            if getattr(self, name):
                query[name] = getattr(self, name)
        if self.states:
            query["state"] = {"$in": list(self.states)}
        if self.created_before:
            query["created_at"] = {"$lt": self.created_before}
        if self.active_before:
            query["last_activity"] = {"$lt": self.active_before}
        return query


class SessionStore:
    """Reads and writes RDP session records."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._sessions = db[schema.SESSIONS]

    async def insert(self, record: SessionRecord) -> None:
        """Stores a new session."""
        await self._sessions.insert_one(record.doc())

    async def get(self, session_id: str) -> SessionRecord | None:
        """A session, or None."""
        doc = await self._sessions.find_one({"_id": session_id})
        return SessionRecord.of(doc) if doc else None

    async def transition(
        self, session_id: str, from_states: tuple[str, ...], changes: dict[str, Any]
    ) -> SessionRecord | None:
        """Sets fields only if the session is in one of ``from_states``; the updated
        record, or None if it was not."""
        result = await self._sessions.update_one(
            {"_id": session_id, "state": {"$in": list(from_states)}}, {"$set": changes}
        )
        if result.modified_count != 1:
            return None
        return await self.get(session_id)

    async def count(self, where: SessionFilter) -> int:
        """How many sessions match."""
        return await self._sessions.count_documents(where.query())

    async def find(
        self, where: SessionFilter, *, offset: int = 0, limit: int = 0
    ) -> list[SessionRecord]:
        """Sessions matching, newest first."""
        cursor = self._sessions.find(where.query()).sort([("created_at", DESCENDING)]).skip(offset)
        if limit:
            cursor = cursor.limit(limit)
        return [SessionRecord.of(doc) async for doc in cursor]

    async def delete(self, session_id: str) -> None:
        """Removes a session (only when its creation failed half-way)."""
        await self._sessions.delete_one({"_id": session_id})
