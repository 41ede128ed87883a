"""Login sessions: the record in MongoDB (``auth_sessions``) and the live entry in Redis.

``lucid:auth:session:{sid}`` exists while a session is alive; revoking a session
deletes it, marks the record revoked and sets ``lucid:auth:revoked-session:{sid}``,
which every server's token verifier checks, so the session's access tokens stop
working everywhere at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from lucid.auth import schema
from lucid.runtime.datastores import find_page
from lucid.runtime.grouped import GroupedInserts
from lucid.runtime.revocations import publish_pending, publish_revocation
from lucid.runtime.tokens import ACCESS_TTL_S, LEEWAY_S, REVOKED_SESSION_KEY

SESSION_KEY = "lucid:auth:session:{sid}"
USER_SESSIONS_KEY = "lucid:auth:user-sessions:{user_id}"
"""A sorted set of a user's live sessions (score: expiry), the concurrency authority."""
REVOKED_SESSION_TTL_S = ACCESS_TTL_S + 4 * LEEWAY_S
"""Long enough to outlive every access token of a revoked session."""


@dataclass(frozen=True)
class SessionRecord:
    """A stored login session."""

    session_id: str
    user_id: str
    created_at: datetime
    last_activity: datetime
    expires_at: datetime
    refresh_jti: str
    ip_address: str = ""
    user_agent: str = ""
    revoked: bool = False
    revoked_at: datetime | None = None
    revoke_reason: str = ""
    hardware_wallet: str = ""

    @classmethod
    def of(cls, doc: dict[str, Any]) -> SessionRecord:
        """From an ``auth_sessions`` document."""
        return cls(
            session_id=doc["_id"],
            user_id=doc["user_id"],
            created_at=doc["created_at"],
            last_activity=doc.get("last_activity") or doc["created_at"],
            expires_at=doc["expires_at"],
            refresh_jti=doc.get("refresh_jti", ""),
            ip_address=doc.get("ip_address", ""),
            user_agent=doc.get("user_agent", ""),
            revoked=bool(doc.get("revoked")),
            revoked_at=doc.get("revoked_at"),
            revoke_reason=doc.get("revoke_reason", ""),
            hardware_wallet=doc.get("hardware_wallet", ""),
        )


# Atomically: forget expired sessions, refuse when ``limit`` (> 0) are live, else add.
_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]))
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return 1
"""


def _active(user_id: str, now: datetime) -> dict[str, Any]:
    return {"user_id": user_id, "revoked": False, "expires_at": {"$gt": now}}


class SessionStore:
    """Reads and writes login sessions."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], redis: Any) -> None:
        self._sessions = db[schema.SESSIONS]
        self._new_sessions = GroupedInserts(self._sessions)
        """New sessions are group-committed: sign-ins under load share inserts."""
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)

    async def reserve(
        self, user_id: str, session_id: str, *, limit: int, now: datetime, expires_at: datetime
    ) -> bool:
        """Takes one of the user's ``limit`` concurrent session places (0: no limit)."""
        ttl = max(1, int((expires_at - now).total_seconds()))
        taken = await self._reserve(
            keys=[USER_SESSIONS_KEY.format(user_id=user_id)],
            args=[repr(now.timestamp()), limit, repr(expires_at.timestamp()), session_id, ttl],
        )
        return bool(int(taken))

    async def release(self, user_id: str, session_ids: list[str]) -> None:
        """Gives places back."""
        if session_ids:
            await self._redis.zrem(USER_SESSIONS_KEY.format(user_id=user_id), *session_ids)

    async def insert(
        self,
        record: SessionRecord,
        *,
        refresh_hash: str,
        access_hash: str,
        now: datetime,
    ) -> None:
        """Stores a new session in MongoDB and Redis."""
        await self._new_sessions.insert(
            {
                "_id": record.session_id,
                "user_id": record.user_id,
                "created_at": record.created_at,
                "last_activity": record.last_activity,
                "expires_at": record.expires_at,
                "refresh_jti": record.refresh_jti,
                "refresh_token_hash": refresh_hash,
                "access_token_hash": access_hash,
                "ip_address": record.ip_address,
                "user_agent": record.user_agent,
                "hardware_wallet": record.hardware_wallet,
                "revoked": False,
                "revoked_at": None,
            }
        )
        await self._cache(record, now)

    async def _cache(self, record: SessionRecord, now: datetime) -> None:
        ttl = max(1, int((record.expires_at - now).total_seconds()))
        value = json.dumps(
            {
                "user_id": record.user_id,
                "refresh_jti": record.refresh_jti,
                "created_at": record.created_at.isoformat(),
            }
        )
        await self._redis.set(SESSION_KEY.format(sid=record.session_id), value, ex=ttl)

    async def get(self, session_id: str) -> SessionRecord | None:
        """A session by id."""
        doc = await self._sessions.find_one({"_id": session_id})
        return SessionRecord.of(doc) if doc else None

    async def is_live(self, session_id: str) -> bool:
        """Whether the session's Redis entry exists."""
        return bool(await self._redis.exists(SESSION_KEY.format(sid=session_id)))

    async def active_ids(self, user_id: str, now: datetime) -> list[str]:
        """The user's active sessions, oldest first."""
        cursor = self._sessions.find(_active(user_id, now), {"_id": 1}).sort(
            [("created_at", ASCENDING), ("_id", ASCENDING)]
        )
        return [doc["_id"] async for doc in cursor]

    async def page_active(
        self, user_id: str, now: datetime, *, offset: int, limit: int
    ) -> tuple[list[SessionRecord], int]:
        """A page of the user's active sessions, newest first, and how many there are."""
        query = _active(user_id, now)
        docs, total = await find_page(
            self._sessions,
            query,
            [("created_at", DESCENDING), ("_id", DESCENDING)],
            offset=offset,
            limit=limit,
        )
        return [SessionRecord.of(doc) for doc in docs], total

    async def rotate(
        self,
        session_id: str,
        *,
        old_jti: str,
        new_jti: str,
        refresh_hash: str,
        access_hash: str,
        now: datetime,
        expires_at: datetime,
    ) -> SessionRecord | None:
        """Moves a live session from one refresh token to the next, extending it to
        ``expires_at``.

        None when the session is revoked or ``old_jti`` is no longer its current
        refresh token (a rotated token presented again).
        """
        doc = await self._sessions.find_one_and_update(
            {"_id": session_id, "refresh_jti": old_jti, "revoked": False},
            {
                "$set": {
                    "refresh_jti": new_jti,
                    "refresh_token_hash": refresh_hash,
                    "access_token_hash": access_hash,
                    "last_activity": now,
                    "expires_at": expires_at,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        record = SessionRecord.of(doc)
        await self._cache(record, now)
        await self._redis.zadd(
            USER_SESSIONS_KEY.format(user_id=record.user_id),
            {session_id: expires_at.timestamp()},
            xx=True,
        )
        return record

    async def revoke(self, session_ids: list[str], now: datetime, reason: str) -> list[str]:
        """Revokes sessions; returns those that were not revoked before."""
        if not session_ids:
            return []
        cursor = self._sessions.find(
            {"_id": {"$in": session_ids}, "revoked": False}, {"_id": 1, "user_id": 1}
        )
        owners = {doc["_id"]: doc["user_id"] async for doc in cursor}
        live = list(owners)
        if live:
            await self._sessions.update_many(
                {"_id": {"$in": live}, "revoked": False},
                {"$set": {"revoked": True, "revoked_at": now, "revoke_reason": reason}},
            )
        pending: list[str] = []
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.set(REVOKED_SESSION_KEY.format(sid=sid), reason, ex=REVOKED_SESSION_TTL_S)
                pending += publish_revocation(pipe, session_id=sid)
                pipe.delete(SESSION_KEY.format(sid=sid))
            for sid, user_id in owners.items():
                pipe.zrem(USER_SESSIONS_KEY.format(user_id=user_id), sid)
            await pipe.execute()
        await publish_pending(self._redis, pending)
        return live
