"""``payments_payout_batches``: a batch's identity, key and payout ids (states live on payouts).

A batch is written *with* its payout documents (``items``, ``complete`` false) before the
payouts themselves; once they are all stored the copy is dropped. A process that dies in
between leaves a batch that ``incomplete`` finds, and its payouts are stored from the copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lucid.payments import schema
from lucid.payments.store.base import DuplicateError, RecordStore, document_of, record_from


@dataclass
class BatchRecord:
    """One batch."""

    batch_id: str
    idempotency_key: str
    batch_type: int
    priority: int
    created_by: str
    create_time: float
    estimated_completion_time: float
    total_micros: int
    payout_ids: list[str] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    """The payout documents, kept until every one is stored (``complete``)."""
    complete: bool = True

    def to_doc(self) -> dict[str, Any]:
        return document_of(self, "batch_id")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> BatchRecord:
        return record_from(cls, doc)


class BatchKeyTakenError(Exception):
    """The batch idempotency key is already used."""


class BatchStore(RecordStore[BatchRecord]):
    """Reads and writes batches."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        super().__init__(db[schema.BATCHES], BatchRecord.from_doc)

    async def insert(self, record: BatchRecord) -> None:
        try:
            await self.insert_doc(record.to_doc())
        except DuplicateError:
            raise BatchKeyTakenError(record.idempotency_key) from None

    async def incomplete(self) -> list[BatchRecord]:
        """Batches whose payouts may not all be stored yet."""
        return await self.many({"complete": False})

    async def mark_complete(self, batch_id: str) -> None:
        """Every payout of the batch is stored: the copy goes."""
        await self.update({"_id": batch_id}, {"complete": True, "items": []})
