"""``payments_kyc_records``: KYC records of nodes; a kyc_hash binds one address (unique)."""

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
class KycRecord:
    """One KYC record (the KYC data itself is never kept, only its hash)."""

    kyc_record_id: str
    node_id: str
    user_id: str
    kyc_hash: str
    recipient: str
    level: int
    verifier: str
    signed_time: float
    create_time: float
    expire_time: float
    status: str = "active"
    revoke_time: float = 0.0

    def to_doc(self) -> dict[str, Any]:
        return {**asdict(self), "_id": self.kyc_record_id}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> KycRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


class KycHashTakenError(Exception):
    """The kyc_hash is already bound."""


class KycStore:
    """Reads and writes KYC records."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.collection = db[schema.KYC_RECORDS]

    async def insert(self, record: KycRecord) -> None:
        try:
            await self.collection.insert_one(record.to_doc())
        except DuplicateKeyError:
            raise KycHashTakenError(record.kyc_hash) from None
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None

    async def find(self, query: Mapping[str, Any]) -> KycRecord | None:
        try:
            doc = await self.collection.find_one(dict(query))
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        return None if doc is None else KycRecord.from_doc(doc)

    async def page(
        self, query: Mapping[str, Any], offset: int, limit: int
    ) -> tuple[list[KycRecord], int]:
        try:
            total = await self.collection.count_documents(dict(query))
            cursor = self.collection.find(dict(query)).sort("create_time", -1)
            docs = [d async for d in cursor.skip(offset).limit(limit)]
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        return [KycRecord.from_doc(d) for d in docs], total

    async def revoke(self, record_id: str, when: float) -> KycRecord | None:
        try:
            doc = await self.collection.find_one_and_update(
                {"_id": record_id},
                {"$set": {"status": "revoked", "revoke_time": when}},
                return_document=ReturnDocument.AFTER,
            )
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        return None if doc is None else KycRecord.from_doc(doc)
