"""``payments_audit_events``: what was done to payouts and wallets, by whom, and why."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from lucid.lib.clock import Clock
from lucid.payments import schema

log = logging.getLogger("lucid.payments.audit")


class AuditStore:
    """Appends audit events (never keys or signatures)."""

    def __init__(self, db: AsyncDatabase[Any], clock: Clock) -> None:
        self.collection = db[schema.AUDIT]
        self.clock = clock

    async def record(
        self, action: str, actor: str, *, payout_id: str = "", details: Mapping[str, Any] = {}
    ) -> None:
        """Stores one event; a failing store is logged, never hides the operation's result."""
        event = {
            "_id": str(uuid.uuid4()),
            "time": self.clock.timestamp(),
            "action": action,
            "actor": actor,
            "payout_id": payout_id,
            "details": dict(details),
        }
        try:
            await self.collection.insert_one(event)
        except PyMongoError:
            log.exception("audit event %s of %s not stored", action, payout_id)

    async def events(self, payout_id: str) -> list[dict[str, Any]]:
        """A payout's events, oldest first."""
        cursor = self.collection.find({"payout_id": payout_id}).sort("time", 1)
        return [d async for d in cursor]
