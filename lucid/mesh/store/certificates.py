"""``mesh_certificates``: every certificate the mesh CA issued, and revocations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lucid.mesh import schema


@dataclass(frozen=True)
class IssuedRecord:
    """One certificate the CA issued (times in epoch seconds)."""

    serial_number: str
    spiffe_id: str
    service_name: str
    not_after: float
    issued_at: float
    issued_to: str
    revoke_at: float | None = None
    replaces: str | None = None

    def revoked(self, now: float) -> bool:
        """Whether the certificate is revoked at ``now``."""
        return self.revoke_at is not None and self.revoke_at <= now


class CertificateStore:
    """Issued certificates by serial (hex)."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.collection = db[schema.CERTIFICATES]

    async def record(self, issued: IssuedRecord) -> None:
        """Records an issued certificate."""
        await self.collection.insert_one(
            {k: v for k, v in issued.__dict__.items() if v is not None}
        )

    async def get(self, serial_number: str) -> IssuedRecord | None:
        """One issued certificate."""
        doc = await self.collection.find_one({"serial_number": serial_number}, {"_id": 0})
        if doc is None:
            return None
        return IssuedRecord(
            serial_number=doc["serial_number"],
            spiffe_id=doc["spiffe_id"],
            service_name=doc["service_name"],
            not_after=float(doc["not_after"]),
            issued_at=float(doc["issued_at"]),
            issued_to=doc["issued_to"],
            revoke_at=float(doc["revoke_at"]) if doc.get("revoke_at") else None,
            replaces=doc.get("replaces"),
        )

    async def revoke_at(self, serial_number: str, revoke_at: float) -> None:
        """Marks a certificate revoked from ``revoke_at`` on."""
        await self.collection.update_one(
            {"serial_number": serial_number}, {"$set": {"revoke_at": revoke_at}}
        )

    async def claim_rotation(self, serial_number: str, revoke_at: float) -> bool:
        """Marks a certificate revoked from ``revoke_at`` on unless it already was
        (False: another rotation or a revocation came first)."""
        result = await self.collection.update_one(
            {"serial_number": serial_number, "revoke_at": {"$exists": False}},
            {"$set": {"revoke_at": revoke_at}},
        )
        return result.modified_count == 1
