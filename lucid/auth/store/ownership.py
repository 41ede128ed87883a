"""Who owns a recording session and who may watch it (``auth_session_ownership``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lucid.auth import schema


@dataclass(frozen=True)
class Ownership:
    """The owner, the other full participants and the observers of a session."""

    session_id: str
    owner_user_id: str
    participants: tuple[str, ...] = ()
    observers: tuple[str, ...] = ()


class OwnershipStore:
    """Reads and replaces ownership records."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._records = db[schema.OWNERSHIP]

    async def put(self, ownership: Ownership, now: datetime) -> None:
        """Creates or replaces the record of a session."""
        await self._records.replace_one(
            {"_id": ownership.session_id},
            {
                "_id": ownership.session_id,
                "owner_user_id": ownership.owner_user_id,
                "participants": list(ownership.participants),
                "observers": list(ownership.observers),
                "updated_at": now,
            },
            upsert=True,
        )

    async def get(self, session_id: str) -> Ownership | None:
        """The record of a session, if any."""
        doc = await self._records.find_one({"_id": session_id})
        if doc is None:
            return None
        return Ownership(
            doc["_id"],
            doc["owner_user_id"],
            tuple(doc.get("participants", ())),
            tuple(doc.get("observers", ())),
        )
