"""What every payments repository shares: records as dataclasses, pymongo kept inside.

A ``RecordStore`` turns documents into one record type and MongoDB failures into
``StoreUnavailableError`` (UNAVAILABLE ``LUCID_ERR_5003``); a duplicate of a unique
index comes back as ``DuplicateError`` for the caller to name.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, fields, is_dataclass
from typing import Any, Generic, TypeVar

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.runtime.errors import ErrorCode, LucidError

log = logging.getLogger("lucid.payments.store")
R = TypeVar("R")


class StoreUnavailableError(LucidError):
    """MongoDB failed; nothing is known to have changed."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, "the payments store failed")
        self.__cause__ = exc
        log.warning("the payments store failed: %r", exc)


class DuplicateError(Exception):
    """A unique index refused the document."""


@contextlib.asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Runs MongoDB calls; their failures leave as ``StoreUnavailableError``."""
    try:
        yield
    except DuplicateKeyError:
        raise DuplicateError from None
    except PyMongoError as exc:
        raise StoreUnavailableError(exc) from None


def record_from(cls: type[R], doc: Mapping[str, Any]) -> R:
    """A dataclass record from a document (unknown fields, such as ``_id``, dropped)."""
    assert is_dataclass(cls)
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in doc.items() if k in known})


def document_of(record: Any, key: str) -> dict[str, Any]:
    """A record as a document whose ``_id`` is its ``key`` field."""
    doc = asdict(record)
    doc["_id"] = doc[key]
    return doc


class RecordStore(Generic[R]):
    """One collection of one record type."""

    def __init__(
        self, collection: AsyncCollection[dict[str, Any]], load: Callable[[Mapping[str, Any]], R]
    ) -> None:
        self.collection = collection
        self.load = load

    async def insert_doc(self, doc: dict[str, Any]) -> None:
        """Stores a document; raises ``DuplicateError`` when a unique index refuses it."""
        async with translated():
            await self.collection.insert_one(doc)

    async def find(self, query: Mapping[str, Any]) -> R | None:
        async with translated():
            doc = await self.collection.find_one(dict(query))
        return None if doc is None else self.load(doc)

    async def many(
        self, query: Mapping[str, Any], limit: int = 0, sort: tuple[str, int] = ("create_time", 1)
    ) -> list[R]:
        """Records matching ``query`` (oldest first by default)."""
        async with translated():
            cursor = self.collection.find(dict(query)).sort(*sort)
            if limit:
                cursor = cursor.limit(limit)
            return [self.load(d) async for d in cursor]

    async def page(
        self,
        query: Mapping[str, Any],
        offset: int,
        limit: int,
        sort: tuple[str, int] = ("create_time", -1),
    ) -> tuple[list[R], int]:
        """One page (newest first by default) and how many match."""
        async with translated():
            total = await self.collection.count_documents(dict(query))
            cursor = self.collection.find(dict(query)).sort(*sort)
            docs = [d async for d in cursor.skip(offset).limit(limit)]
        return [self.load(d) for d in docs], total

    async def counts_by(self, field: str) -> dict[str, int]:
        """How many records hold each value of ``field`` (for the metrics)."""
        async with translated():
            cursor = await self.collection.aggregate(
                [{"$group": {"_id": f"${field}", "n": {"$sum": 1}}}]
            )
            return {str(d["_id"]): int(d["n"]) async for d in cursor}

    async def update(self, query: Mapping[str, Any], changes: Mapping[str, Any]) -> R | None:
        """Sets ``changes`` on the document matching ``query``; the record after, or None."""
        async with translated():
            doc = await self.collection.find_one_and_update(
                dict(query), {"$set": dict(changes)}, return_document=ReturnDocument.AFTER
            )
        return None if doc is None else self.load(doc)
