"""Auth's short-lived Redis state: sign-in challenges, rate-limit windows, the token
blacklist. Times come from the caller's clock, so a fake clock moves them too;
Redis TTLs only clean up.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from lucid.runtime.tokens import REVOKED_JTI_KEY

CHALLENGE_KEY = "lucid:auth:challenge:{nonce}"
RATE_KEY = "lucid:auth:ratelimit:{name}:{subject}"


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


# Sliding-window log: drop entries older than the window, refuse when full (returning
# the oldest entry's time, so the caller can say when to retry), else add this one.
_SLIDING_WINDOW = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, oldest[2]}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], window + 1)
return {1, '0'}
"""


class RateLimiter:
    """Per-subject sliding windows in Redis (one atomic script call per hit)."""

    def __init__(self, redis: Any) -> None:
        self._script = redis.register_script(_SLIDING_WINDOW)

    async def hit(self, name: str, subject: str, *, limit: int, window_s: int, now: float) -> float:
        """Counts a call; returns 0 when allowed, else the seconds until one is."""
        member = f"{now:.6f}:{secrets.token_hex(4)}"
        allowed, oldest = await self._script(
            keys=[RATE_KEY.format(name=name, subject=subject)],
            args=[repr(now), window_s, limit, member],
        )
        if int(allowed):
            return 0.0
        return max(0.001, float(oldest) + window_s - now)


class TokenBlacklist:
    """Revoked token ids (``lucid:auth:blacklist:{jti}``), kept for the token's remaining life."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def add(self, jti: str, remaining_s: float, reason: str) -> None:
        """Blacklists a token id until its token would have expired."""
        ttl = max(1, int(remaining_s) + 1)
        await self._redis.set(REVOKED_JTI_KEY.format(jti=jti), reason, ex=ttl)
