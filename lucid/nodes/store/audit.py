"""The audit log (``nodes_audit_logs``): every mutating operation of the cluster."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from lucid.lib.ids import new_id
from lucid.nodes.store import Doc, translated


class AuditStore:
    """Appends and reads audit entries."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._c = collection

    async def append(
        self,
        *,
        when: datetime,
        actor: str,
        action: str,
        target_id: str,
        result: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Records one operation."""
        with translated():
            await self._c.insert_one(
                {
                    "_id": new_id(),
                    "event_time": when,
                    "actor": actor,
                    "action": action,
                    "target_id": target_id,
                    "result": result,
                    "details": details or {},
                }
            )

    async def of_target(self, target_id: str) -> list[Doc]:
        """The entries about one node, pool or payout, newest first."""
        with translated():
            return await self._c.find({"target_id": target_id}).sort("event_time", -1).to_list(None)
