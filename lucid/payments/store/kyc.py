"""``payments_kyc_records``: KYC records of nodes; a kyc_hash binds one address (unique)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lucid.payments import schema
from lucid.payments.store.base import DuplicateError, RecordStore, document_of, record_from


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
        return document_of(self, "kyc_record_id")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> KycRecord:
        return record_from(cls, doc)


class KycHashTakenError(Exception):
    """The kyc_hash is already bound."""


class KycStore(RecordStore[KycRecord]):
    """Reads and writes KYC records."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        super().__init__(db[schema.KYC_RECORDS], KycRecord.from_doc)

    async def insert(self, record: KycRecord) -> None:
        try:
            await self.insert_doc(record.to_doc())
        except DuplicateError:
            raise KycHashTakenError(record.kyc_hash) from None

    async def revoke(self, record_id: str, when: float) -> KycRecord | None:
        return await self.update({"_id": record_id}, {"status": "revoked", "revoke_time": when})
