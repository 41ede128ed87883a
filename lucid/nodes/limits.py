"""Per-caller rate limits of spec 05 §5 (per minute: PoOT 100, payouts 50), in Redis.

One GCRA bucket per caller and group, the algorithm of ``lucid.lib.ratelimit``
(a call fits when ``max(tat, now) + window / limit - now <= window``), run
atomically as a Lua script under ``lucid:nodes:rate_limit:<group>:<caller>``.
Over the limit: ``LUCID_ERR_3001`` (RESOURCE_EXHAUSTED) with a retry delay.
"""

from __future__ import annotations

import redis.asyncio as aioredis
import redis.exceptions

from lucid.lib.clock import Clock
from lucid.lib.ratelimit import Policy, micros
from lucid.nodes.schema import REDIS_PREFIX
from lucid.runtime.errors import ErrorCode, LucidError

POLICIES = {"poot": Policy(limit=100, window_s=60.0), "payout": Policy(limit=50, window_s=60.0)}

_GCRA = """
local now = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local after = tat + span
if after - now > window then
  return {0, after - now - window}
end
redis.call('SET', KEYS[1], after, 'PX', math.ceil(window / 1000))
return {1, 0}
"""


class RateLimiter:
    """Checks calls against the group policies."""

    def __init__(self, cache: aioredis.Redis, clock: Clock) -> None:
        self._cache = cache
        self._clock = clock
        self._script = cache.register_script(_GCRA)

    async def check(self, group: str, caller: str) -> None:
        """Counts one call; RESOURCE_EXHAUSTED when over the group's limit."""
        policy = POLICIES[group]
        span = -(-policy.window_us // policy.limit)
        key = f"{REDIS_PREFIX}rate_limit:{group}:{caller}"
        try:
            allowed, wait_us = await self._script(
                keys=[key], args=[micros(self._clock.timestamp()), span, policy.window_us]
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
