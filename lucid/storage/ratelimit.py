"""Per-caller rate limits of storage's rpc groups (spec 08 §5), in Redis.

Spec 08 gives per-minute limits with bursts: database operations 500 (burst
1000), backups 10 (20), sharding 5 (10). The front door (gateway) limits
requests per user and IP for the whole mesh; these limits are storage's own,
per caller and rpc group, so that an admin token or service cannot run more
than a burst of backups in any minute. Backup changes (create, delete,
restore, schedules) count as "backups"; reading their state counts as a
database operation, so progress polling is not starved. A sliding window of 60 s holds at most
the burst: the (burst + 1)-th call within a minute is RESOURCE_EXHAUSTED with
RetryInfo. Keys: ``lucid:storage:ratelimit:<group>:<caller>`` (sorted sets,
expiring after the window). If Redis does not answer the call is let through
(the limiter protects the stores; it must not make them unreachable).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from lucid.runtime.context import current_principal
from lucid.runtime.errors import ErrorCode, LucidError

log = logging.getLogger("lucid.storage.ratelimit")

WINDOW_S = 60.0


@dataclass(frozen=True)
class Limit:
    """Calls allowed per minute, and the burst a window may hold."""

    per_minute: int
    burst: int


LIMITS = {
    "database": Limit(500, 1000),
    "backups": Limit(10, 20),
    "sharding": Limit(5, 10),
}

_SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count >= burst then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, tostring(oldest[2] + window - now)}
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return {1, '0'}
"""


class RateLimiter:
    """Sliding-window limits per caller and group."""

    def __init__(self, redis: aioredis.Redis, limits: dict[str, Limit] | None = None) -> None:
        self.redis = redis
        self.limits = limits or LIMITS
        self._script = redis.register_script(_SCRIPT)

    async def check(self, group: str) -> None:
        """Counts a call of the current caller; raises RESOURCE_EXHAUSTED over the burst."""
        limit = self.limits[group]
        caller = current_principal().display
        key = f"lucid:storage:ratelimit:{group}:{caller}"
        try:
            allowed, retry = await self._script(
                keys=[key], args=[time.time(), WINDOW_S, limit.burst, uuid.uuid4().hex]
            )
        except aioredis.RedisError:
            log.warning("rate limit not checked: Redis does not answer")
            return
        if not int(allowed):
            raise LucidError(
                ErrorCode.ERROR_CODE_RATE_LIMITED,
                f"more than {limit.burst} {group} calls in a minute",
                retry_after_s=max(float(retry), 0.001),
                metadata={"limit_group": group, "burst": str(limit.burst)},
            )
