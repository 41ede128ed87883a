"""Hardware wallets registered to users (``auth_hardware_wallets``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lucid.auth import schema


@dataclass(frozen=True)
class WalletRecord:
    """A device registered to a user."""

    device_id: str
    user_id: str
    wallet_type: int
    tron_address: str
    public_key: str
    firmware_version: str
    registered_at: datetime
    status: str = "active"

    @classmethod
    def of(cls, doc: dict[str, Any]) -> WalletRecord:
        """From an ``auth_hardware_wallets`` document."""
        return cls(
            doc["_id"],
            doc["user_id"],
            int(doc["wallet_type"]),
            doc["tron_address"],
            doc.get("public_key", ""),
            doc.get("firmware_version", ""),
            doc["registered_at"],
            doc.get("status", "active"),
        )


class WalletRecordStore:
    """Registers devices to users."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._wallets = db[schema.HARDWARE_WALLETS]

    async def get(self, device_id: str) -> WalletRecord | None:
        """The registration of a device."""
        doc = await self._wallets.find_one({"_id": device_id})
        return WalletRecord.of(doc) if doc else None

    async def register(self, record: WalletRecord) -> bool:
        """Registers a device (again, for its owner); False if another user holds it."""
        doc = {
            "_id": record.device_id,
            "user_id": record.user_id,
            "wallet_type": record.wallet_type,
            "tron_address": record.tron_address,
            "public_key": record.public_key,
            "firmware_version": record.firmware_version,
            "registered_at": record.registered_at,
            "last_used": record.registered_at,
            "status": record.status,
        }
        try:
            await self._wallets.insert_one(doc)
        except DuplicateKeyError:
            result = await self._wallets.replace_one(
                {"_id": record.device_id, "user_id": record.user_id}, doc
            )
            return result.matched_count == 1
        return True

    async def touch(self, device_id: str, now: datetime) -> None:
        """Records a use of the device."""
        await self._wallets.update_one({"_id": device_id}, {"$set": {"last_used": now}})
