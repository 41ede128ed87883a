"""Backup schedules (5-field cron, UTC) and the asyncio task that runs them.

The scheduler wakes every ``interval_s``: each enabled schedule whose
``next_run_time`` has passed is claimed with a conditional update (so two
storage instances never run the same slot twice), moved to its next run, and
starts a backup. The same loop deletes backups past their retention.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.errors import invalid_argument, not_found
from lucid.storage import cron
from lucid.storage.backups import Backups
from lucid.storage.store.schedules import ScheduleStore
from lucid.storage.v1 import backup_pb2

log = logging.getLogger("lucid.storage.schedules")


class Schedules:
    """Backup schedule records and the scheduler."""

    def __init__(self, store: ScheduleStore, backups: Backups, clock: Clock) -> None:
        self.store = store
        self.backups = backups
        self.clock = clock

    async def create(
        self,
        *,
        name: str,
        expression: str,
        backup_type: int,
        retention_days: int,
        collections: Sequence[str],
        enabled: bool,
    ) -> dict[str, Any]:
        """Records a schedule with its next run; a bad expression is INVALID_ARGUMENT."""
        try:
            parsed = cron.parse(expression)
        except cron.CronError as exc:
            raise invalid_argument("cron", str(exc)) from exc
        if backup_type not in (backup_pb2.BACKUP_TYPE_UNSPECIFIED, backup_pb2.BACKUP_TYPE_FULL):
            raise invalid_argument("backup_type", "only full backups exist on a single node")
        now = self.clock.now()
        record = {
            "schedule_id": new_id(),
            "name": name,
            "cron": parsed.expression,
            "backup_type": "full",
            "retention_days": retention_days,
            "collections": list(collections),
            "enabled": enabled,
            "next_run_time": parsed.next_after(now),
            "last_run_time": None,
            "last_backup_id": "",
            "create_time": now,
        }
        await self.store.insert(record)
        return record

    async def find_page(self, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Schedules by creation, and how many there are."""
        return await self.store.page(offset=offset, limit=limit)

    async def delete(self, schedule_id: str) -> None:
        """Deletes a schedule; its backups stay."""
        if not await self.store.delete(schedule_id):
            raise not_found(f"schedule {schedule_id}")

    async def run_due(self, now: datetime | None = None) -> list[str]:
        """Starts the backups of every due schedule; returns their ids."""
        now = now or self.clock.now()
        started = []
        for schedule in await self.store.due(now):
            following = cron.parse(schedule["cron"]).next_after(now)
            if not await self.store.claim(schedule, following, now):
                continue  # another instance took this slot
            try:
                backup = await self.backups.create(
                    name=f"{schedule['name']} {now:%Y-%m-%dT%H:%MZ}",
                    backup_type=backup_pb2.BACKUP_TYPE_FULL,
                    collections=schedule["collections"],
                    compression=True,
                    encryption=True,
                    retention_days=schedule["retention_days"],
                    schedule_id=schedule["schedule_id"],
                )
            except Exception:
                log.exception("scheduled backup not started", extra={"schedule": schedule["name"]})
                continue
            await self.store.ran(schedule["schedule_id"], backup["backup_id"])
            started.append(backup["backup_id"])
        return started

    async def run(self, interval_s: float = 30.0) -> None:
        """The scheduler task: due schedules and expired backups, forever."""
        while True:
            try:
                await self.run_due()
                await self.backups.sweep_expired()
            except Exception:  # MongoDB may be down; health reports that
                log.debug("scheduler pass failed", exc_info=True)
            await asyncio.sleep(interval_s)
