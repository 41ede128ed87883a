"""PoOT validations (``poot_validations``): every validation, rejections included."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from lucid.nodes.store import Doc, from_doc, to_doc, translated


@dataclass(frozen=True)
class ValidationRecord:
    """One stored validation."""

    validation_id: str
    node_id: str
    output_hash: str
    output_time: datetime
    score: float
    confidence: float
    status: int
    nonce: str
    created_at: datetime
    complexity: float = 0.0
    freshness: float = 0.0
    reliability: float = 0.0
    nonce_score: float = 0.0
    errors: list[str] = field(default_factory=list)
    batch_id: str = ""
    suspicious: bool = False
    alert: bool = False
    validation_time_ms: int = 0


class ValidationStore:
    """Appends and reads validations, and remembers each node's nonces for 24 h."""

    def __init__(self, collection: AsyncCollection[Doc], nonces: AsyncCollection[Doc]) -> None:
        self._c = collection
        self._nonces = nonces

    async def nonce_seen(self, node_id: str, nonce: str, since: datetime) -> bool:
        """Whether the node sent this nonce in a scored validation since ``since``."""
        with translated():
            doc = await self._nonces.find_one({"_id": f"{node_id}:{nonce}"})
        return doc is not None and doc["used_at"] >= since

    async def remember_nonce(self, node_id: str, nonce: str, at: datetime) -> None:
        """Records a nonce's use (kept by a TTL index for a day)."""
        with translated():
            await self._nonces.replace_one(
                {"_id": f"{node_id}:{nonce}"}, {"used_at": at}, upsert=True
            )

    async def insert(self, record: ValidationRecord) -> None:
        """Stores a validation."""
        with translated():
            await self._c.insert_one(to_doc(record, "validation_id"))

    async def get(self, validation_id: str) -> ValidationRecord | None:
        """A validation by id."""
        with translated():
            doc = await self._c.find_one({"_id": validation_id})
        return from_doc(ValidationRecord, doc, "validation_id") if doc else None

    async def history(
        self,
        node_id: str,
        *,
        status: int,
        start: datetime | None,
        end: datetime | None,
        offset: int,
        limit: int,
    ) -> tuple[list[ValidationRecord], int]:
        """A page of a node's validations, newest first."""
        criteria: Doc = {"node_id": node_id}
        if status:
            criteria["status"] = status
        window: Doc = {}
        if start is not None:
            window["$gte"] = start
        if end is not None:
            window["$lt"] = end
        if window:
            criteria["created_at"] = window
        with translated():
            total = await self._c.count_documents(criteria)
            docs = (
                await self._c.find(criteria)
                .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
                .skip(offset)
                .limit(limit)
                .to_list(None)
            )
        return [from_doc(ValidationRecord, d, "validation_id") for d in docs], total
