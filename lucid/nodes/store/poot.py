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
    """Appends and reads validations."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._c = collection

    async def insert(self, record: ValidationRecord) -> None:
        """Stores a validation."""
        with translated():
            await self._c.insert_one(to_doc(record, "validation_id"))

    async def recent(
        self, node_id: str, limit: int, since: datetime | None = None
    ) -> list[ValidationRecord]:
        """A node's newest validations (not rejections), newest first."""
        criteria: Doc = {"node_id": node_id, "errors": []}
        if since is not None:
            criteria["created_at"] = {"$gte": since}
        with translated():
            docs = (
                await self._c.find(criteria)
                .sort("created_at", DESCENDING)
                .limit(limit)
                .to_list(None)
            )
        return [from_doc(ValidationRecord, d, "validation_id") for d in docs]

    async def latest(self, node_id: str) -> ValidationRecord | None:
        """A node's newest validation, rejections included."""
        with translated():
            doc = await self._c.find_one({"node_id": node_id}, sort=[("created_at", DESCENDING)])
        return from_doc(ValidationRecord, doc, "validation_id") if doc else None

    async def nonce_used(self, node_id: str, nonce: str, since: datetime) -> bool:
        """Whether the node sent this nonce in a scored validation since ``since``."""
        with translated():
            doc = await self._c.find_one(
                {"node_id": node_id, "nonce": nonce, "errors": [], "created_at": {"$gte": since}},
                {"_id": 1},
            )
        return doc is not None

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
