"""``payments_wallets``: wallet records; a hot wallet's key is stored sealed, never in clear."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lucid.payments import schema
from lucid.payments.store.base import DuplicateError, RecordStore, document_of, record_from


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
        return document_of(self, "wallet_id")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> WalletRecord:
        record = record_from(cls, doc)
        record.sealed_key = bytes(record.sealed_key)
        return record


class AddressTakenError(Exception):
    """Another wallet has this address."""


class WalletStore(RecordStore[WalletRecord]):
    """Reads and writes wallets."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        super().__init__(db[schema.WALLETS], WalletRecord.from_doc)

    async def insert(self, record: WalletRecord) -> None:
        try:
            await self.insert_doc(record.to_doc())
        except DuplicateError:
            raise AddressTakenError(record.address) from None

    async def page(
        self,
        query: Mapping[str, Any],
        offset: int,
        limit: int,
        sort: tuple[str, int] = ("create_time", 1),
    ) -> tuple[list[WalletRecord], int]:
        """Wallets, oldest first."""
        return await super().page(query, offset, limit, sort)

    async def update(self, wallet_id: Any, changes: Mapping[str, Any]) -> WalletRecord | None:
        """Changes a wallet that is not archived."""
        return await super().update({"_id": wallet_id, "status": {"$ne": "archived"}}, changes)
