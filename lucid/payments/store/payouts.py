"""``payments_payouts``: payout records and their state changes.

Every change of state is a conditional update on the state it leaves, so two
workers (or a worker and a cancel) can never both move one payout. The signed
transaction is stored under ``tx`` before it is broadcast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lucid.payments import schema
from lucid.payments.store.base import (
    DuplicateError,
    RecordStore,
    document_of,
    record_from,
    translated,
)

PENDING = "pending"
PROCESSING = "processing"
BROADCAST = "broadcast"
CONFIRMED = "confirmed"
FAILED = "failed"
CANCELLED = "cancelled"
LIVE_STATES = (PENDING, PROCESSING, BROADCAST, CONFIRMED)
"""States whose amount counts against the limits."""


@dataclass
class SentTx:
    """A signed transaction of a payout (kept before it is broadcast)."""

    txid: str
    signed: dict[str, Any]
    """The signed transaction as java-tron JSON (what is broadcast)."""
    expiration_ms: int
    block_number: int = 0
    block_time: float = 0.0
    fee_sun: int = 0
    energy_used: int = 0
    bandwidth_used: int = 0
    result: str = ""
    result_message: str = ""


@dataclass
class PayoutRecord:
    """One payout."""

    payout_id: str
    idempotency_key: str
    user_id: str
    recipient: str
    amount_micros: int
    router: str
    priority: int
    batch_type: int
    reason: str
    create_time: float
    update_time: float
    estimated_completion_time: float
    status: str = PENDING
    node_id: str = ""
    session_id: str = ""
    kyc_hash: str = ""
    batch_id: str = ""
    custom_data: dict[str, Any] = field(default_factory=dict)
    tx: SentTx | None = None
    attempts: int = 0
    """Transactions signed for it so far (a new one only after the last expired unseen)."""
    retry_count: int = 0
    retry_after: float = 0.0
    """A pending payout put back after a try that sent nothing waits until then."""
    error_message: str = ""
    confirm_time: float = 0.0

    def to_doc(self) -> dict[str, Any]:
        return document_of(self, "payout_id")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PayoutRecord:
        record = record_from(cls, doc)
        stored: Any = record.tx  # a dict as read from MongoDB
        if stored:
            record.tx = SentTx(**stored)
        return record


class DuplicateKeyUsedError(Exception):
    """The idempotency key is already taken by ``existing``."""

    def __init__(self, existing: PayoutRecord) -> None:
        super().__init__(existing.idempotency_key)
        self.existing = existing


class PayoutStore(RecordStore[PayoutRecord]):
    """Reads and writes payouts."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        super().__init__(db[schema.PAYOUTS], PayoutRecord.from_doc)

    async def insert(self, record: PayoutRecord) -> None:
        """Stores a new payout; raises ``DuplicateKeyUsedError`` if its key is taken."""
        try:
            await self.insert_doc(record.to_doc())
        except DuplicateError:
            existing = await self.by_key(record.idempotency_key)
            if existing is None:  # pragma: no cover - the unique index says it exists
                raise
            raise DuplicateKeyUsedError(existing) from None

    async def insert_many(self, records: Sequence[PayoutRecord]) -> None:
        """Stores a batch's payouts (all new keys, checked by the caller)."""
        async with translated():
            await self.collection.insert_many([r.to_doc() for r in records], ordered=True)

    async def insert_missing(self, records: Sequence[PayoutRecord]) -> int:
        """Stores those of ``records`` not stored yet (by id or key); how many it stored."""
        stored = 0
        for record in records:
            try:
                await self.insert_doc(record.to_doc())
            except DuplicateError:
                continue
            stored += 1
        return stored

    async def get(self, payout_id: str) -> PayoutRecord | None:
        return await self.find({"_id": payout_id})

    async def by_key(self, key: str) -> PayoutRecord | None:
        return await self.find({"idempotency_key": key})

    async def move(
        self, payout_id: str, from_states: Sequence[str], changes: Mapping[str, Any]
    ) -> PayoutRecord | None:
        """Applies ``changes`` if the payout is in one of ``from_states``; the result or None."""
        return await self.update({"_id": payout_id, "status": {"$in": list(from_states)}}, changes)

    async def move_if(
        self, payout_id: str, condition: Mapping[str, Any], changes: Mapping[str, Any]
    ) -> PayoutRecord | None:
        """Applies ``changes`` if the payout matches ``condition``; the result or None."""
        return await self.update({"_id": payout_id, **condition}, changes)

    async def amount_since(self, since: float, router: str | None = None) -> int:
        """The sum of live payouts created since ``since`` (a router's, or all)."""
        query: dict[str, Any] = {"create_time": {"$gte": since}, "status": {"$in": LIVE_STATES}}
        if router:
            query["router"] = router
        async with translated():
            docs = self.collection.find(query, {"amount_micros": 1})
            return sum([int(d["amount_micros"]) async for d in docs])


def tx_doc(tx: SentTx) -> dict[str, Any]:
    """A transaction as stored under ``tx``."""
    return asdict(tx)
