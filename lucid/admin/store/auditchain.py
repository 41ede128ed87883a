"""The audit chain's repository: entries in ``seq`` order, filtered reads, counts.

The store knows nothing of hashes; it keeps what it is given and refuses a second
entry with the same ``seq`` (``ChainConflictError``), which is how two writers racing
for the chain's head are told apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.admin.schema import AUDIT_CHAIN
from lucid.runtime.errors import ErrorCode, LucidError


class ChainConflictError(Exception):
    """Another entry took this ``seq`` first."""


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the audit chain, as stored."""

    entry_id: str
    seq: int
    event_time: datetime
    user_id: str
    username: str
    action: str
    resource: str
    resource_id: str
    details: dict[str, Any]
    ip_address: str
    user_agent: str
    severity: str
    risk_level: str
    result: str
    step_up_id: str
    request_id: str
    prev_hash: str
    entry_hash: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> AuditRecord:
        """The record of a stored document."""
        values = {k: v for k, v in doc.items() if k != "_id"}
        return cls(entry_id=doc["_id"], **values)

    def document(self) -> dict[str, Any]:
        """The document to store."""
        values = asdict(self)
        values["_id"] = values.pop("entry_id")
        return values


@dataclass(frozen=True)
class AuditFilter:
    """Which entries a query, export or count covers (empty fields match all)."""

    action: str = ""
    user_id: str = ""
    resource: str = ""
    resource_id: str = ""
    severity: str = ""
    start: datetime | None = None
    end: datetime | None = None

    def query(self) -> dict[str, Any]:
        """The MongoDB filter."""
        query: dict[str, Any] = {
            name: value
            for name, value in (
                ("action", self.action),
                ("user_id", self.user_id),
                ("resource", self.resource),
                ("resource_id", self.resource_id),
                ("severity", self.severity),
            )
            if value
        }
        span: dict[str, Any] = {}
        if self.start is not None:
            span["$gte"] = self.start
        if self.end is not None:
            span["$lte"] = self.end
        if span:
            query["event_time"] = span
        return query


def _unavailable(exc: PyMongoError) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"audit store: {exc}")


class AuditChainStore:
    """``admin_audit_chain``."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection = db[AUDIT_CHAIN]

    async def head(self) -> AuditRecord | None:
        """The entry with the highest ``seq``."""
        try:
            doc = await self.collection.find_one({}, sort=[("seq", DESCENDING)])
        except PyMongoError as exc:
            raise _unavailable(exc) from exc
        return AuditRecord.of(doc) if doc else None

    async def at(self, seq: int) -> AuditRecord | None:
        """The entry at ``seq``."""
        try:
            doc = await self.collection.find_one({"seq": seq})
        except PyMongoError as exc:
            raise _unavailable(exc) from exc
        return AuditRecord.of(doc) if doc else None

    async def append(self, record: AuditRecord) -> None:
        """Stores a new entry; ``ChainConflictError`` if its ``seq`` is taken."""
        try:
            await self.collection.insert_one(record.document())
        except DuplicateKeyError as exc:
            raise ChainConflictError(record.seq) from exc
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def find(self, where: AuditFilter, offset: int, limit: int) -> list[AuditRecord]:
        """A page of matching entries, newest first."""
        try:
            cursor = (
                self.collection.find(where.query())
                .sort([("seq", DESCENDING)])
                .skip(offset)
                .limit(limit)
            )
            return [AuditRecord.of(doc) async for doc in cursor]
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def count(self, where: AuditFilter) -> int:
        """How many entries match."""
        try:
            return await self.collection.count_documents(where.query())
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def in_order(self, where: AuditFilter) -> AsyncIterator[AuditRecord]:
        """Matching entries, oldest first."""
        try:
            async for doc in self.collection.find(where.query()).sort([("seq", ASCENDING)]):
                yield AuditRecord.of(doc)
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def oldest_time(self) -> datetime | None:
        """When the oldest kept entry was made (None: no entry)."""
        try:
            doc = await self.collection.find_one({}, {"event_time": 1}, sort=[("seq", ASCENDING)])
        except PyMongoError as exc:
            raise _unavailable(exc) from exc
        return doc["event_time"] if doc else None

    async def hashes_between(self, after: int, through: int) -> list[str]:
        """The entry hashes of ``after`` < seq ≤ ``through``, in order."""
        query = {"seq": {"$gt": after, "$lte": through}}
        try:
            cursor = self.collection.find(query, {"entry_hash": 1}).sort([("seq", ASCENDING)])
            return [str(doc["entry_hash"]) async for doc in cursor]
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def purge_through(self, seq: int) -> int:
        """Removes the entries up to ``seq`` (retention); how many went."""
        try:
            result = await self.collection.delete_many({"seq": {"$lte": seq}})
        except PyMongoError as exc:
            raise _unavailable(exc) from exc
        return result.deleted_count
