"""Single documents of the admin cluster's state: the system mode and the audit
chain's retention checkpoint (the last purged entry), in ``admin_state``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from lucid.admin.schema import STATE
from lucid.runtime.errors import ErrorCode, LucidError

MODE_ID = "system_mode"
CHECKPOINT_ID = "audit_checkpoint"


@dataclass(frozen=True)
class ModeRecord:
    """The system mode: ``normal``, ``new_sessions_disabled`` or ``lockdown``."""

    mode: str
    reason: str
    since: datetime | None
    auto_revert_at: datetime | None
    set_by: str


@dataclass(frozen=True)
class Checkpoint:
    """The last entry removed by retention: the chain continues from its hash."""

    seq: int
    entry_hash: str


NORMAL = ModeRecord("normal", "", None, None, "")


class StateStore:
    """``admin_state``."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db[STATE]

    async def _get(self, doc_id: str) -> dict[str, Any] | None:
        try:
            return await self.collection.find_one({"_id": doc_id})
        except PyMongoError as exc:
            raise LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"state: {exc}") from exc

    async def _put(self, doc_id: str, values: dict[str, Any]) -> None:
        try:
            await self.collection.replace_one({"_id": doc_id}, values, upsert=True)
        except PyMongoError as exc:
            raise LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"state: {exc}") from exc

    async def mode(self) -> ModeRecord:
        """The stored mode (normal if none was ever set)."""
        doc = await self._get(MODE_ID)
        if doc is None:
            return NORMAL
        doc.pop("_id")
        return ModeRecord(**doc)

    async def set_mode(self, record: ModeRecord) -> None:
        """Replaces the mode."""
        await self._put(MODE_ID, asdict(record))

    async def checkpoint(self) -> Checkpoint | None:
        """The retention checkpoint, if anything was purged."""
        doc = await self._get(CHECKPOINT_ID)
        return Checkpoint(doc["seq"], doc["entry_hash"]) if doc else None

    async def set_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Moves the retention checkpoint."""
        await self._put(CHECKPOINT_ID, asdict(checkpoint))
