"""Resource samples (``rdp_resource_metrics``, kept 7 days) and alerts
(``rdp_resource_alerts``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from lucid.rdp import schema
from lucid.rdp.records import Alert, Sample


class ResourceStore:
    """Appends samples; keeps alerts."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._metrics = db[schema.METRICS]
        self._alerts = db[schema.ALERTS]

    async def add_sample(self, sample: Sample) -> None:
        """Stores a sample."""
        await self._metrics.insert_one(sample.doc())

    async def samples(self, scope: str, subject_id: str, since: datetime) -> list[Sample]:
        """Samples of a subject since ``since``, oldest first."""
        cursor = self._metrics.find(
            {"scope": scope, "subject_id": subject_id, "time": {"$gte": since}}
        ).sort([("time", ASCENDING)])
        return [Sample.of(doc) async for doc in cursor]

    async def add_alert(self, alert: Alert) -> None:
        """Stores an alert."""
        await self._alerts.insert_one(alert.doc())

    async def alert(self, alert_id: str) -> Alert | None:
        """An alert, or None."""
        doc = await self._alerts.find_one({"_id": alert_id})
        return Alert.of(doc) if doc else None

    async def open_alert(
        self, server_id: str, resource_type: str, session_id: str = ""
    ) -> Alert | None:
        """The unresolved alert of a subject (the host, a server, or a server's
        session) and resource, if any."""
        doc = await self._alerts.find_one(
            {
                "server_id": server_id,
                "session_id": session_id,
                "resource_type": resource_type,
                "resolved": False,
            }
        )
        return Alert.of(doc) if doc else None

    async def mark_enforced(self, alert_id: str) -> None:
        """Notes that the limit of an alert was enforced."""
        await self._alerts.update_one({"_id": alert_id}, {"$set": {"enforced": True}})

    async def resolve(self, alert_id: str, when: datetime, by: str) -> Alert | None:
        """Marks an alert resolved; the updated alert."""
        await self._alerts.update_one(
            {"_id": alert_id, "resolved": False},
            {"$set": {"resolved": True, "resolved_at": when, "resolved_by": by}},
        )
        return await self.alert(alert_id)

    async def find_alerts(
        self,
        *,
        server_ids: Sequence[str] | None,
        severity: str,
        resolved: bool | None,
        resource_type: str,
        offset: int,
        limit: int,
    ) -> tuple[list[Alert], int]:
        """Alerts of some servers (None: any, with the host's), newest first, and how many
        match; empty filters match any."""
        query: dict[str, Any] = {}
        if server_ids is not None:
            query["server_id"] = {"$in": list(server_ids)}
        for name, value in (("severity", severity), ("resource_type", resource_type)):
            if value:
                query[name] = value
        if resolved is not None:
            query["resolved"] = resolved
        cursor = (
            self._alerts.find(query).sort([("created_at", DESCENDING)]).skip(offset).limit(limit)
        )
        return [Alert.of(doc) async for doc in cursor], await self._alerts.count_documents(query)
