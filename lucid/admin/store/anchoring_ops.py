"""The manual anchoring operations' repository (``admin_anchoring_ops``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from lucid.admin.schema import ANCHORING_OPS
from lucid.runtime.errors import ErrorCode, LucidError


@dataclass(frozen=True)
class AnchoringOpRecord:
    """One AnchorSessions request and where it stands."""

    operation_id: str
    session_ids: list[str]
    priority: str
    state: str
    requested_by: str
    reason: str
    created_at: datetime
    finished_at: datetime | None = None
    tx_hash: str = ""
    block_height: int = 0
    error_message: str = ""
    refused: dict[str, str] = field(default_factory=dict)
    """Sessions the sessions cluster refused to anchor again, with its reason."""

    @classmethod
    def of(cls, doc: dict[str, Any]) -> AnchoringOpRecord:
        """The record of a stored document."""
        values = {k: v for k, v in doc.items() if k != "_id"}
        return cls(operation_id=doc["_id"], **values)


def _unavailable(exc: PyMongoError) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"anchoring operations: {exc}")


class AnchoringOpStore:
    """``admin_anchoring_ops``."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db[ANCHORING_OPS]

    async def put(self, record: AnchoringOpRecord) -> None:
        """Stores (or replaces) an operation."""
        doc = asdict(record)
        doc["_id"] = doc.pop("operation_id")
        try:
            await self.collection.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def get(self, operation_id: str) -> AnchoringOpRecord | None:
        """An operation by id."""
        try:
            doc = await self.collection.find_one({"_id": operation_id})
        except PyMongoError as exc:
            raise _unavailable(exc) from exc
        return AnchoringOpRecord.of(doc) if doc else None
