"""Audit events (``auth_audit_events``): who did what, with what result, from where.

Never holds signatures, tokens, link tokens or TOTP codes: callers pass only the
fields below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from lucid.auth import schema
from lucid.auth.store import find_page
from lucid.lib.ids import new_id

USER_AGENT_MAX = 500


@dataclass(frozen=True)
class AuditRecord:
    """One audited event."""

    event_id: str
    event_time: datetime
    action: str
    result: str
    user_id: str = ""
    tron_address: str = ""
    resource: str = ""
    reason: str = ""
    ip_address: str = ""
    user_agent: str = ""
    session_id: str = ""
    request_id: str = ""

    @classmethod
    def of(cls, doc: dict[str, Any]) -> AuditRecord:
        """From an ``auth_audit_events`` document."""
        return cls(
            event_id=doc["_id"],
            event_time=doc["event_time"],
            action=doc["action"],
            result=doc["result"],
            **{
                key: doc.get(key) or ""
                for key in (
                    "user_id",
                    "tron_address",
                    "resource",
                    "reason",
                    "ip_address",
                    "user_agent",
                    "session_id",
                    "request_id",
                )
            },
        )


class AuditStore:
    """Appends and lists audit events."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._events = db[schema.AUDIT]

    async def add(self, *, event_time: datetime, action: str, result: str, **fields: str) -> str:
        """Appends an event; returns its id."""
        event_id = new_id()
        doc: dict[str, Any] = {
            "_id": event_id,
            "event_time": event_time,
            "action": action,
            "result": result,
        }
        for key, value in fields.items():
            if value:
                doc[key] = value[:USER_AGENT_MAX] if key == "user_agent" else value
        await self._events.insert_one(doc)
        return event_id

    async def page(
        self, query: dict[str, Any], *, offset: int, limit: int
    ) -> tuple[list[AuditRecord], int]:
        """A page of events matching ``query``, newest first, and how many match."""
        docs, total = await find_page(
            self._events,
            query,
            [("event_time", DESCENDING), ("_id", DESCENDING)],
            offset=offset,
            limit=limit,
        )
        return [AuditRecord.of(doc) for doc in docs], total
