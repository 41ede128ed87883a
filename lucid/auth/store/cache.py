"""Auth's short-lived Redis state: sign-in challenges and the token blacklist (rate
limits count in ``lucid.runtime.limits``). Times come from the caller's clock, so a
fake clock moves them too; Redis TTLs only clean up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lucid.runtime.revocations import publish_pending, publish_revocation
from lucid.runtime.tokens import REVOKED_JTI_KEY

CHALLENGE_KEY = "lucid:auth:challenge:{nonce}"


@dataclass(frozen=True)
class StoredChallenge:
    """A challenge as issued."""

    tron_address: str
    message: str
    expires_at: float


class ChallengeStore:
    """One-time challenges, deleted when taken."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def put(self, nonce: str, challenge: StoredChallenge, ttl_s: int) -> None:
        """Keeps a challenge for ``ttl_s`` seconds."""
        value = json.dumps(
            {
                "tron_address": challenge.tron_address,
                "message": challenge.message,
                "expires_at": challenge.expires_at,
            }
        )
        await self._redis.set(CHALLENGE_KEY.format(nonce=nonce), value, ex=ttl_s)

    async def take(self, nonce: str) -> StoredChallenge | None:
        """The challenge of a nonce, deleted in the same step (None if unknown or used)."""
        raw = await self._redis.getdel(CHALLENGE_KEY.format(nonce=nonce))
        if raw is None:
            return None
        data = json.loads(raw)
        return StoredChallenge(data["tron_address"], data["message"], float(data["expires_at"]))


class TokenBlacklist:
    """Revoked token ids (``lucid:auth:blacklist:{jti}``), kept for the token's remaining life."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def add(self, jti: str, remaining_s: float, reason: str) -> None:
        """Blacklists a token id until its token would have expired."""
        ttl = max(1, int(remaining_s) + 1)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(REVOKED_JTI_KEY.format(jti=jti), reason, ex=ttl)
            pending = publish_revocation(pipe, jti=jti)  # servers that checked it hear it
            await pipe.execute()
        await publish_pending(self._redis, pending)
