"""Per-caller rate limits of spec 05 §5 (per minute: PoOT 100, payouts 50), in Redis.

Spec 05 §7 check 13 asks that the 101st call *in a minute* be refused, so this is
a sliding log (at most ``limit`` calls in any 60 s), not the GCRA of
``lucid.lib.ratelimit``, whose bucket refills continuously and would let a 101st
call through once the first hundred took more than 0.6 s. One sorted set per
caller and group, ``lucid:nodes:rate_limit:<group>:<caller>``, updated atomically
by a Lua script. Over the limit: ``LUCID_ERR_3001`` (RESOURCE_EXHAUSTED) with the
time until the oldest call leaves the window.
"""

from __future__ import annotations

import redis.asyncio as aioredis
import redis.exceptions

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.lib.ratelimit import Policy, micros
from lucid.nodes.schema import REDIS_PREFIX
from lucid.runtime.errors import ErrorCode, LucidError

POLICIES = {
    "poot": Policy(limit=100, window_s=60.0),
    "payout": Policy(limit=50, window_s=60.0),
    "auth_failures": Policy(limit=4, window_s=900.0),
}

_SLIDING = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return {1, 0}
"""


class RateLimiter:
    """Checks calls against the group policies."""

    def __init__(self, cache: aioredis.Redis, clock: Clock) -> None:
        self._cache = cache
        self._clock = clock
        self._script = cache.register_script(_SLIDING)

    async def exceeded(self, group: str, caller: str) -> bool:
        """Counts one event; whether the group's limit was already reached."""
        try:
            await self.check(group, caller)
        except LucidError as exc:
            if exc.code == ErrorCode.ERROR_CODE_RATE_LIMITED:
                return True
            raise
        return False

    async def check(self, group: str, caller: str) -> None:
        """Counts one call; RESOURCE_EXHAUSTED when over the group's limit."""
        policy = POLICIES[group]
        key = f"{REDIS_PREFIX}rate_limit:{group}:{caller}"
        try:
            allowed, wait_us = await self._script(
                keys=[key],
                args=[micros(self._clock.timestamp()), policy.window_us, policy.limit, new_id()],
            )
        except redis.exceptions.RedisError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_CACHE_UNAVAILABLE, f"the rate limiter failed: {exc}"
            ) from None
        if not int(allowed):
            raise LucidError(
                ErrorCode.ERROR_CODE_RATE_LIMITED,
                f"more than {policy.limit} {group} calls per minute",
                retry_after_s=max(int(wait_us) / 1e6, 1.0),
            )
