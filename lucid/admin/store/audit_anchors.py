"""The anchorings of the audit chain's head (``admin_audit_anchors``): which entry
(``seq``, its hash) was anchored under which pseudo-session id and chain anchoring."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.admin.schema import AUDIT_ANCHORS
from lucid.runtime.errors import ErrorCode, LucidError


@dataclass(frozen=True)
class AuditAnchorRecord:
    """One anchoring of the chain's head."""

    anchor_id: str
    """The pseudo-session id the chain knows the anchoring by."""
    seq: int
    entry_hash: str
    first_seq: int
    total_checksum: str
    anchoring_id: str
    created_at: datetime

    @classmethod
    def of(cls, doc: dict[str, Any]) -> AuditAnchorRecord:
        """From a stored document."""
        return cls(anchor_id=doc["_id"], **{k: v for k, v in doc.items() if k != "_id"})


class AuditAnchorStore:
    """Reads and writes the anchorings."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db[AUDIT_ANCHORS]

    async def last(self) -> AuditAnchorRecord | None:
        """The anchoring of the highest entry."""
        try:
            doc = await self.collection.find_one({}, sort=[("seq", DESCENDING)])
        except PyMongoError as exc:
            raise LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, str(exc)) from exc
        return AuditAnchorRecord.of(doc) if doc else None

    async def add(self, record: AuditAnchorRecord) -> bool:
        """Stores an anchoring; False if that entry was anchored already."""
        doc = {"_id": record.anchor_id, **asdict(record)}
        del doc["anchor_id"]
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            return False
        except PyMongoError as exc:
            raise LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, str(exc)) from exc
        return True
