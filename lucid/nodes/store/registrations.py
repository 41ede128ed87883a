"""Node registrations (``node_registrations``): how each registration ended (approved,
rejected or expired); open ones live in Redis (``lucid.nodes.challenges``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection

from lucid.nodes.store import Doc, from_doc, to_doc, translated


@dataclass(frozen=True)
class RegistrationRecord:
    """A stored registration."""

    registration_id: str
    node_id: str
    node_address: str
    owner_user_id: str
    state: int
    message: str
    created_at: datetime
    challenge_expires_at: datetime
    expires_at: datetime
    verification_score: float = 0.0
    signature_verified: bool = False
    capability_verified: bool = False
    reachability_verified: bool = False
    storage_verified: bool = False
    stake_verified: bool = False
    rejection_reason: str = ""
    stake_tx_hash: str = ""


class RegistrationStore:
    """Reads and writes registrations."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._c = collection

    async def insert(self, record: RegistrationRecord) -> None:
        """Adds a registration."""
        with translated():
            await self._c.insert_one(to_doc(record, "registration_id"))

    async def get(self, registration_id: str) -> RegistrationRecord | None:
        """A registration by id."""
        with translated():
            doc = await self._c.find_one({"_id": registration_id})
        return from_doc(RegistrationRecord, doc, "registration_id") if doc else None

    async def expire(self, states: tuple[int, ...], expired_state: int, now: datetime) -> int:
        """Marks every registration in ``states`` past its expiry as expired."""
        with translated():
            result = await self._c.update_many(
                {"state": {"$in": list(states)}, "expires_at": {"$lte": now}},
                {"$set": {"state": expired_state}},
            )
        return result.modified_count
