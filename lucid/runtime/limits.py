"""Per-caller limits for every cluster: GCRA counted atomically in Redis, in memory
while Redis is down.

The one limiter of the mesh: the gateway's tiers (spec 01 §9), auth's sign-in
limits, storage's rpc groups and sessions' creations all count here. Each
identifier of each tier is one Redis hash ``<prefix>rl:<tier>:<id>`` under the
owning cluster's prefix (``lucid:gateway:rl:public:203.0.113.9``), holding the two
theoretical arrival times of ``lucid.lib.ratelimit`` (main window and burst,
integer microseconds). A Lua script reads, decides and writes in one step, so
concurrent edges and gateways never over-admit. The script is the same arithmetic
as ``lucid.lib.ratelimit.decide`` (a test runs both side by side). When Redis does
not answer, the process keeps limiting with a ``MemoryLimiter`` and says so
(``local_fallback``), and the gateway's health reads degraded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lucid.lib.clock import Clock
from lucid.lib.ratelimit import MICROS, Decision, MemoryLimiter, Policy, micros
from lucid.runtime.datastores import prefix
from lucid.runtime.errors import ErrorCode, LucidError

log = logging.getLogger("lucid.runtime.limits")

SCRIPT = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local b_limit, b_window = tonumber(ARGV[5]), tonumber(ARGV[6])
local function span(n, lim, win) return -math.floor(-(n * win) / lim) end
local tat = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local b_tat = tonumber(redis.call('HGET', KEYS[1], 'b') or '0')
if tat < now then tat = now end
if b_tat < now then b_tat = now end
local allowed, burst, retry = 1, 0, 0
if cost > 0 then
  local main_next = tat + span(cost, limit, window)
  local burst_next = b_tat
  if b_limit > 0 then burst_next = b_tat + span(cost, b_limit, b_window) end
  if main_next - now <= window then
    tat = main_next
  elseif b_limit > 0 and burst_next - now <= b_window then
    b_tat = burst_next
    burst = 1
  else
    allowed = 0
    retry = main_next - now - window
    if b_limit > 0 and burst_next - now - b_window < retry then
      retry = burst_next - now - b_window
    end
  end
  if allowed == 1 then
    redis.call('HSET', KEYS[1], 't', string.format('%d', tat), 'b', string.format('%d', b_tat))
    redis.call('PEXPIRE', KEYS[1], math.floor((math.max(tat, b_tat) - now) / 1000) + 1000)
  end
end
local remaining = math.floor((window - (tat - now)) * limit / window)
if b_limit > 0 then
  remaining = remaining + math.floor((b_window - (b_tat - now)) * b_limit / b_window)
end
if remaining < 0 then remaining = 0 end
if retry < 0 then retry = 0 end
return {allowed, burst, remaining, string.format('%d', tat), string.format('%d', retry)}
"""


@dataclass(frozen=True)
class Limit:
    """A named limit: what a cluster counts (``login``, ``backups``) and its policy."""

    name: str
    policy: Policy


@dataclass(frozen=True)
class Outcome:
    """A decision and where it was made."""

    decision: Decision
    local_fallback: bool = False


class RateLimiter:
    """Checks requests against their tier's policy, under one cluster's Redis prefix."""

    def __init__(self, redis: aioredis.Redis, clock: Clock, cluster: str) -> None:
        self.redis = redis
        self.clock = clock
        self.key_prefix = prefix(cluster) + "rl:"
        self.memory = MemoryLimiter()
        self._script = redis.register_script(SCRIPT)
        self.redis_ok = True

    async def check(self, tier: str, identifier: str, policy: Policy, cost: int) -> Outcome:
        """Counts ``cost`` units for ``identifier`` in ``tier`` (0 only looks)."""
        key = f"{self.key_prefix}{tier}:{identifier}"
        now = self.clock.timestamp()
        try:
            raw = await self._script(
                keys=[key],
                args=[
                    micros(now),
                    cost,
                    policy.limit,
                    policy.window_us,
                    policy.burst,
                    policy.burst_window_us,
                ],
            )
        except (RedisError, OSError) as exc:
            if self.redis_ok:
                log.warning("redis unreachable; limiting in memory", extra={"error": str(exc)})
            self.redis_ok = False
            return Outcome(self.memory.check(key, policy, now, cost), local_fallback=True)
        if not self.redis_ok:
            log.info("redis reachable again; limiting in redis")
        self.redis_ok = True
        allowed, burst, remaining, tat, retry = raw
        decision = Decision(
            allowed=bool(int(allowed)),
            burst=bool(int(burst)),
            limit=policy.limit,
            remaining=int(remaining),
            reset_at=int(tat) / MICROS,
            retry_after_s=int(retry) / MICROS,
        )
        return Outcome(decision)

    async def enforce(self, limit: Limit, identifier: str, cost: int = 1) -> None:
        """Counts ``cost`` units; past the limit raises ``LUCID_ERR_3001`` with a RetryInfo."""
        policy = limit.policy
        outcome = await self.check(limit.name, identifier, policy, cost)
        if outcome.decision.allowed:
            return
        raise LucidError(
            ErrorCode.ERROR_CODE_RATE_LIMITED,
            f"too many {limit.name} requests: at most {policy.limit} per {policy.window_s:g} s",
            metadata={"limit": str(policy.limit), "window_s": f"{policy.window_s:g}"},
            retry_after_s=max(outcome.decision.retry_after_s, 0.001),
        )
