"""Per-caller limits for every cluster: GCRA counted atomically in Redis, in memory
while Redis is down.

The one limiter of the mesh: the gateway's tiers (spec 01 §9), auth's sign-in
limits, storage's rpc groups and sessions' creations all count here. Each
identifier of each tier is one Redis hash ``<prefix>rl:<tier>:<id>`` under the
owning cluster's prefix (``lucid:gateway:rl:public:203.0.113.9``), holding the two
theoretical arrival times of ``lucid.lib.ratelimit`` (main window and burst,
integer microseconds). A Lua script reads, decides and writes in one step, so
concurrent edges and gateways never over-admit; it takes any number of keys, so the
descriptors of one Envoy rate-limit request cost one round trip. On a Redis Cluster a
script's keys must share a hash slot, so there a batch holds only keys of one slot (the
others wait for the next script, still in arrival order per key). The script is the same arithmetic
as ``lucid.lib.ratelimit.decide`` (a test runs both side by side). When Redis does
not answer, the process keeps limiting with a ``MemoryLimiter`` and says so
(``local_fallback``), and the gateway's health reads degraded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError

from lucid.lib.clock import Clock
from lucid.lib.ratelimit import MICROS, Decision, MemoryLimiter, Policy, micros
from lucid.runtime.datastores import prefix
from lucid.runtime.errors import ErrorCode, LucidError

log = logging.getLogger("lucid.runtime.limits")

MAX_BATCH = 256
"""The most keys one script counts (it holds Redis for their time)."""

SCRIPT = """
local out = {}
local function span(n, lim, win) return -math.floor(-(n * win) / lim) end
for i = 1, #KEYS do
  local a = (i - 1) * 6
  local now = tonumber(ARGV[a + 1])
  local cost = tonumber(ARGV[a + 2])
  local limit, window = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local b_limit, b_window = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local tat = tonumber(redis.call('HGET', KEYS[i], 't') or '0')
  local b_tat = tonumber(redis.call('HGET', KEYS[i], 'b') or '0')
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
      redis.call('HSET', KEYS[i], 't', string.format('%d', tat), 'b', string.format('%d', b_tat))
      redis.call('PEXPIRE', KEYS[i], math.floor((math.max(tat, b_tat) - now) / 1000) + 1000)
    end
  end
  local remaining = math.floor((window - (tat - now)) * limit / window)
  if b_limit > 0 then
    remaining = remaining + math.floor((b_window - (b_tat - now)) * b_limit / b_window)
  end
  if remaining < 0 then remaining = 0 end
  if retry < 0 then retry = 0 end
  out[#out + 1] = allowed
  out[#out + 1] = burst
  out[#out + 1] = remaining
  out[#out + 1] = string.format('%d', tat)
  out[#out + 1] = string.format('%d', retry)
end
return out
"""


@dataclass(frozen=True)
class Limit:
    """A named limit: what a cluster counts (``login``, ``backups``) and its policy."""

    name: str
    policy: Policy


@dataclass(frozen=True)
class Count:
    """What one check counts: ``cost`` units (0 only looks) for ``identifier`` in ``tier``."""

    tier: str
    identifier: str
    policy: Policy
    cost: int


@dataclass(frozen=True)
class _Waiting:
    """A count queued for the next script, and who waits for its outcome."""

    key: str
    count: Count
    now: float
    future: asyncio.Future[Outcome]


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
        self._one_slot_per_script = isinstance(redis, RedisCluster)
        self.redis_ok = True
        self._queue: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def check(self, tier: str, identifier: str, policy: Policy, cost: int) -> Outcome:
        """Counts ``cost`` units for ``identifier`` in ``tier`` (0 only looks)."""
        return (await self.check_many([Count(tier, identifier, policy, cost)]))[0]

    async def check_many(self, counts: Sequence[Count]) -> list[Outcome]:
        """Counts each of ``counts`` on its own (one refused changes none of the others).

        Checks wait in a queue that one task empties: everything queued while the
        previous script ran goes to Redis in the next one (at most ``MAX_BATCH`` keys),
        so under load many calls share a round trip (and its system calls) while each
        key is still read, decided and written atomically, in arrival order."""
        if not counts:
            return []
        now = self.clock.timestamp()
        loop = asyncio.get_running_loop()
        waiting = [
            _Waiting(f"{self.key_prefix}{c.tier}:{c.identifier}", c, now, loop.create_future())
            for c in counts
        ]
        flusher = self._flusher
        if flusher is not None and flusher.get_loop() is not loop:  # a former loop's leftovers
            self._queue = [w for w in self._queue if w.future.get_loop() is loop]
            flusher = None
        self._queue += waiting
        if flusher is None or flusher.done():
            self._flusher = loop.create_task(self._flush())
        return [await w.future for w in waiting]

    async def _flush(self) -> None:
        """Sends the queue to Redis, one batch at a time, until it is empty."""
        batch: list[_Waiting] = []
        try:
            while self._queue:
                batch, self._queue = self._next_batch()
                for w, outcome in zip(batch, await self._run(batch), strict=True):
                    if not w.future.done():
                        w.future.set_result(outcome)
        except BaseException as exc:
            for w in (*batch, *self._queue):
                if not w.future.done():
                    w.future.set_exception(exc)
            self._queue = []
            if not isinstance(exc, Exception):
                raise

    def _next_batch(self) -> tuple[list[_Waiting], list[_Waiting]]:
        """The next script's counts and what stays queued: the first ``MAX_BATCH``, or on
        a Redis Cluster the first ``MAX_BATCH`` in the slot of the oldest."""
        if not self._one_slot_per_script:
            return self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        slot = key_slot(self._queue[0].key.encode())
        batch: list[_Waiting] = []
        rest: list[_Waiting] = []
        for w in self._queue:
            if len(batch) < MAX_BATCH and key_slot(w.key.encode()) == slot:
                batch.append(w)
            else:
                rest.append(w)
        return batch, rest

    async def _run(self, batch: Sequence[_Waiting]) -> list[Outcome]:
        """One script over the batch's keys; in memory while Redis does not answer."""
        args: list[int] = []
        for w in batch:
            policy = w.count.policy
            args += (
                micros(w.now),
                w.count.cost,
                policy.limit,
                policy.window_us,
                policy.burst,
                policy.burst_window_us,
            )
        try:
            raw = await self._script(keys=[w.key for w in batch], args=args)
        except (RedisError, OSError) as exc:
            if self.redis_ok:
                log.warning("redis unreachable; limiting in memory", extra={"error": str(exc)})
            self.redis_ok = False
            return [
                Outcome(
                    self.memory.check(w.key, w.count.policy, w.now, w.count.cost),
                    local_fallback=True,
                )
                for w in batch
            ]
        if not self.redis_ok:
            log.info("redis reachable again; limiting in redis")
        self.redis_ok = True
        outcomes = []
        for i, w in enumerate(batch):
            allowed, burst, remaining, tat, retry = raw[i * 5 : i * 5 + 5]
            decision = Decision(
                allowed=bool(int(allowed)),
                burst=bool(int(burst)),
                limit=w.count.policy.limit,
                remaining=int(remaining),
                reset_at=int(tat) / MICROS,
                retry_after_s=int(retry) / MICROS,
            )
            outcomes.append(Outcome(decision))
        return outcomes

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
