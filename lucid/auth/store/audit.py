"""Reading auth's audit events (``auth_audit_events``, written by
``lucid.runtime.audit.AuditTrail``): who did what, with what result, from where."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from lucid.auth import schema
from lucid.runtime.datastores import find_page


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
    """Lists audit events."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._events = db[schema.AUDIT]

    async def page(
        self, *, user_id: str, action: str, offset: int, limit: int
    ) -> tuple[list[AuditRecord], int]:
        """A page of events (of a user, of an action: "" for any), newest first, and how
        many match."""
        query: dict[str, Any] = {}
        if user_id:
            query["user_id"] = user_id
        if action:
            query["action"] = action
        docs, total = await find_page(
            self._events,
            query,
            [("event_time", DESCENDING), ("_id", DESCENDING)],
            offset=offset,
            limit=limit,
        )
        return [AuditRecord.of(doc) for doc in docs], total
