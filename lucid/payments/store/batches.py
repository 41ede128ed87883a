"""``payments_payout_batches``: a batch's identity, key and payout ids (states live on payouts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.payments import schema
from lucid.payments.store.payouts import StoreUnavailableError


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

    def to_doc(self) -> dict[str, Any]:
        return {**asdict(self), "_id": self.batch_id}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> BatchRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


class BatchKeyTakenError(Exception):
    """The batch idempotency key is already used."""


class BatchStore:
    """Reads and writes batches."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.collection = db[schema.BATCHES]

    async def insert(self, record: BatchRecord) -> None:
        try:
            await self.collection.insert_one(record.to_doc())
        except DuplicateKeyError:
            raise BatchKeyTakenError(record.idempotency_key) from None
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None

    async def find(self, query: Mapping[str, Any]) -> BatchRecord | None:
        try:
            doc = await self.collection.find_one(dict(query))
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        return None if doc is None else BatchRecord.from_doc(doc)
