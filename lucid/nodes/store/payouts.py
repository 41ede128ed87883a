"""Payouts (``node_payouts``), their batches (``node_payout_batches``) and the payout
schedule (one document in ``node_payout_schedule``).

A batch is written so that a crash half way never pays twice nor pays part of a
batch: first the batch document, which carries every payout it will hold (one
document: all or nothing), marked incomplete; then the payouts, held (``held``:
no handoff takes them), inserted by their fixed ids so a second write skips those
stored already; then they are released and the batch marked complete.
``finish_batch`` redoes the last two steps and is what resumes an interrupted
batch (on a second submission of it, or from the cluster's handoff loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from lucid.nodes.store import Doc, from_doc, to_doc, translated

SCHEDULE_ID = "schedule"
HELD = "held"
"""Marks a payout whose batch is still being written."""
DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class PayoutRecord:
    """What a node is paid, and how far the handoff to cluster 07 went."""

    payout_id: str
    node_id: str
    batch_id: str
    amount_micros: int
    currency: int
    wallet_address: str
    state: int
    created_at: datetime
    updated_at: datetime
    owner_user_id: str = ""
    priority: int = 0
    reason: str = ""
    work_credits: float = 0.0
    epoch: int = 0
    tx_hash: str = ""
    payment_payout_id: str = ""
    retry_count: int = 0
    error_message: str = ""
    finish_time: datetime | None = None


@dataclass(frozen=True)
class BatchRecord:
    """A batch of payouts."""

    batch_id: str
    payout_ids: list[str]
    total_amount_micros: int
    created_at: datetime
    estimated_completion: datetime
    requested_by: str = ""


@dataclass(frozen=True)
class PayoutQuery:
    """A filter of payout lists."""

    node_id: str = ""
    state: int = 0
    owner_user_id: str = ""
    start: datetime | None = None
    end: datetime | None = None

    def filter(self) -> Doc:
        """The MongoDB filter."""
        found: Doc = {}
        for key in ("node_id", "state", "owner_user_id"):
            if getattr(self, key):
                found[key] = getattr(self, key)
        window: Doc = {}
        if self.start is not None:
            window["$gte"] = self.start
        if self.end is not None:
            window["$lt"] = self.end
        if window:
            found["created_at"] = window
        return found


class PayoutStore:
    """Reads and writes payouts, batches and the schedule."""

    def __init__(
        self,
        payouts: AsyncCollection[Doc],
        batches: AsyncCollection[Doc],
        schedule: AsyncCollection[Doc],
    ) -> None:
        self._p = payouts
        self._b = batches
        self._s = schedule

    async def insert_batch(self, batch: BatchRecord, payouts: list[PayoutRecord]) -> None:
        """Stores a batch and its payouts; ``DuplicateError`` when the batch exists."""
        with translated():
            await self._b.insert_one(
                {
                    **to_doc(batch, "batch_id"),
                    "complete": False,
                    "staged": [to_doc(p, "payout_id") for p in payouts],
                }
            )
        await self.finish_batch(batch.batch_id)

    async def finish_batch(self, batch_id: str) -> bool:
        """Writes and releases the payouts of a batch not marked complete (idempotent:
        stored ones are skipped); whether there was anything to finish."""
        with translated():
            doc = await self._b.find_one({"_id": batch_id, "complete": False})
            if doc is None:
                return False
            staged = [{**d, HELD: True} for d in doc.get("staged") or []]
            if staged:
                try:
                    await self._p.insert_many(staged, ordered=False)
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors", [])
                    if any(e.get("code") != DUPLICATE_KEY for e in errors):
                        raise
            await self._p.update_many({"batch_id": batch_id}, {"$unset": {HELD: ""}})
            await self._b.update_one(
                {"_id": batch_id}, {"$set": {"complete": True}, "$unset": {"staged": ""}}
            )
        return True

    async def unfinished_batches(self) -> list[str]:
        """Batches whose writing was interrupted."""
        with translated():
            docs = await self._b.find({"complete": False}, {"_id": 1}).to_list(None)
        return [str(d["_id"]) for d in docs]

    async def batch(self, batch_id: str) -> BatchRecord | None:
        """A batch by id."""
        with translated():
            doc = await self._b.find_one({"_id": batch_id})
        return from_doc(BatchRecord, doc, "batch_id") if doc else None

    async def get(self, payout_id: str) -> PayoutRecord | None:
        """A payout by id."""
        with translated():
            doc = await self._p.find_one({"_id": payout_id})
        return from_doc(PayoutRecord, doc, "payout_id") if doc else None

    async def of_batch(self, batch_id: str) -> list[PayoutRecord]:
        """A batch's payouts."""
        with translated():
            docs = await self._p.find({"batch_id": batch_id}).to_list(None)
        return [from_doc(PayoutRecord, d, "payout_id") for d in docs]

    async def in_state(self, state: int, limit: int) -> list[PayoutRecord]:
        """The oldest payouts in a state."""
        with translated():
            docs = (
                await self._p.find({"state": state, HELD: {"$exists": False}})
                .sort("created_at", ASCENDING)
                .limit(limit)
                .to_list(None)
            )
        return [from_doc(PayoutRecord, d, "payout_id") for d in docs]

    async def transition(
        self, payout_id: str, from_states: tuple[int, ...], changes: Doc
    ) -> PayoutRecord | None:
        """Moves a payout on if it is still in one of ``from_states``."""
        with translated():
            doc = await self._p.find_one_and_update(
                {"_id": payout_id, "state": {"$in": list(from_states)}},
                {"$set": changes},
                return_document=True,
            )
        return from_doc(PayoutRecord, doc, "payout_id") if doc else None

    async def page(
        self, query: PayoutQuery, offset: int, limit: int
    ) -> tuple[list[PayoutRecord], int]:
        """A page of payouts, newest first, and how many match."""
        criteria = query.filter()
        with translated():
            total = await self._p.count_documents(criteria)
            docs = (
                await self._p.find(criteria)
                .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
                .skip(offset)
                .limit(limit)
                .to_list(None)
            )
        return [from_doc(PayoutRecord, d, "payout_id") for d in docs], total

    async def completed_sum(self, query: PayoutQuery) -> int:
        """The amount paid out (completed) among the payouts a query matches."""
        with translated():
            docs = await self._p.find(query.filter(), {"amount_micros": 1, "state": 1}).to_list(
                None
            )
        return sum(int(d["amount_micros"]) for d in docs if d.get("state") == COMPLETED)

    async def schedule(self) -> dict[str, Any]:
        """The stored schedule (empty before the first update)."""
        with translated():
            doc = await self._s.find_one({"_id": SCHEDULE_ID})
        return dict(doc or {})

    async def set_schedule(self, changes: Doc) -> dict[str, Any]:
        """Updates the schedule."""
        with translated():
            doc = await self._s.find_one_and_update(
                {"_id": SCHEDULE_ID}, {"$set": changes}, upsert=True, return_document=True
            )
        return dict(doc or {})


COMPLETED = 3
"""``PAYOUT_STATE_COMPLETED`` (the store sums what was paid)."""
