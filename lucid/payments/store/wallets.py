"""``payments_wallets``: wallet records; a hot wallet's key is stored sealed, never in clear."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.payments import schema
from lucid.payments.store.payouts import StoreUnavailableError


@dataclass
class WalletRecord:
    """One wallet."""

    wallet_id: str
    user_id: str
    name: str
    address: str
    currency: int
    wallet_type: str
    """``hot``, ``cold``, ``multisig`` or ``hardware``."""
    status: str
    """``active``, ``inactive``, ``locked`` or ``archived``."""
    create_time: float
    update_time: float
    sealed_key: bytes = b""
    """The private key sealed with ``lucid.lib.sealing`` (hot wallets only)."""
    purpose: str = ""
    """``payout`` for the payout hot wallet."""

    def to_doc(self) -> dict[str, Any]:
        return {**asdict(self), "_id": self.wallet_id}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> WalletRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        values["sealed_key"] = bytes(values.get("sealed_key", b""))
        return cls(**values)


class AddressTakenError(Exception):
    """Another wallet has this address."""


class WalletStore:
    """Reads and writes wallets."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.collection = db[schema.WALLETS]

    async def insert(self, record: WalletRecord) -> None:
        try:
            await self.collection.insert_one(record.to_doc())
        except DuplicateKeyError:
            raise AddressTakenError(record.address) from None
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None

    async def find(self, query: Mapping[str, Any]) -> WalletRecord | None:
        try:
            doc = await self.collection.find_one(dict(query))
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        return None if doc is None else WalletRecord.from_doc(doc)

    async def page(
        self, query: Mapping[str, Any], offset: int, limit: int
    ) -> tuple[list[WalletRecord], int]:
        try:
            total = await self.collection.count_documents(dict(query))
            cursor = self.collection.find(dict(query)).sort("create_time", 1)
            docs = [d async for d in cursor.skip(offset).limit(limit)]
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        return [WalletRecord.from_doc(d) for d in docs], total

    async def update(self, wallet_id: str, changes: Mapping[str, Any]) -> WalletRecord | None:
        try:
            doc = await self.collection.find_one_and_update(
                {"_id": wallet_id, "status": {"$ne": "archived"}},
                {"$set": dict(changes)},
                return_document=ReturnDocument.AFTER,
            )
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        return None if doc is None else WalletRecord.from_doc(doc)
