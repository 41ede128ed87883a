"""The payout schedule (spec 05 §4): cadence, epoch budget and the payout rules.

Defaults: monthly, disabled, minimum payout 10 USDT, at least 24 h between a
node's payouts, 5 % commission and a 2 % uptime bonus. Stored as one document;
reading it never fails (the defaults fill what was never set).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lucid.lib.clock import Clock
from lucid.nodes.callers import Caller, audit
from lucid.nodes.owed import MINIMUM_MICROS
from lucid.nodes.store.payouts import PayoutStore
from lucid.nodes.v1 import payout_pb2 as ypb
from lucid.runtime.audit import AuditTrail

DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "cadence": ypb.PAYOUT_CADENCE_MONTHLY,
    "epoch_budget_micros": 0,
    "minimum_payout_micros": MINIMUM_MICROS,
    "minimum_interval_seconds": 86_400,
    "commission_percent": 5.0,
    "uptime_bonus_percent": 2.0,
    "next_run_time": None,
    "last_run_time": None,
    "last_epoch": -1,
    "carry": {},
}


class Schedule:
    """Reads and changes the schedule."""

    def __init__(self, store: PayoutStore, audit: AuditTrail, clock: Clock) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock

    async def get(self) -> dict[str, Any]:
        """The schedule in force."""
        stored = await self.store.schedule()
        return {**DEFAULTS, **{k: v for k, v in stored.items() if k in DEFAULTS}}

    async def record_run(self, epoch: int, carry: dict[str, int], when: datetime) -> None:
        """Remembers an epoch's run and what it carried over."""
        await self.store.set_schedule({"last_epoch": epoch, "carry": carry, "last_run_time": when})

    async def update(self, changes: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Changes some fields."""
        await self.store.set_schedule(changes)
        await audit(
            self.audit,
            caller,
            "payout.schedule",
            "schedule",
            details={"fields": ",".join(sorted(changes))},
        )
        return await self.get()
