"""Magic links (``auth_magic_links``, stored by SHA-256 only) and the outbox
(``auth_outbox``) that stands in for e-mail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from lucid.auth import schema
from lucid.lib.ids import new_id


@dataclass(frozen=True)
class MagicLink:
    """A consumed magic link."""

    user_id: str
    email: str


class MagicLinkStore:
    """Single-use sign-in links, kept as hashes."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._links = db[schema.MAGIC_LINKS]

    async def add(
        self, token_hash: str, *, user_id: str, email: str, now: datetime, expires_at: datetime
    ) -> None:
        """Stores a new link by the hash of its token."""
        await self._links.insert_one(
            {
                "_id": token_hash,
                "user_id": user_id,
                "email": email,
                "created_at": now,
                "expires_at": expires_at,
                "used_at": None,
            }
        )

    async def consume(self, token_hash: str, *, email: str, now: datetime) -> MagicLink | None:
        """Marks an unused, unexpired link of ``email`` used; None if there is none."""
        doc = await self._links.find_one_and_update(
            {"_id": token_hash, "email": email, "used_at": None, "expires_at": {"$gt": now}},
            {"$set": {"used_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return MagicLink(doc["user_id"], doc["email"]) if doc else None


@dataclass(frozen=True)
class OutboxMessage:
    """A message that would have been e-mailed."""

    message_id: str
    to: str
    kind: str
    subject: str
    body: str
    link_token: str
    created_at: datetime


class Outbox:
    """Messages to users, read by people (and tests) instead of a mail server."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._messages = db[schema.OUTBOX]

    async def add(
        self, *, to: str, kind: str, subject: str, body: str, link_token: str, now: datetime
    ) -> str:
        """Queues a message; returns its id."""
        message_id = new_id()
        await self._messages.insert_one(
            {
                "_id": message_id,
                "to": to,
                "kind": kind,
                "subject": subject,
                "body": body,
                "link_token": link_token,
                "created_at": now,
            }
        )
        return message_id

    async def latest(self, to: str, kind: str) -> OutboxMessage | None:
        """The newest message of a kind to an address."""
        doc = await self._messages.find_one(
            {"to": to, "kind": kind}, sort=[("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        if doc is None:
            return None
        return OutboxMessage(
            doc["_id"],
            doc["to"],
            doc["kind"],
            doc["subject"],
            doc["body"],
            doc["link_token"],
            doc["created_at"],
        )
