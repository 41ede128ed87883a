"""Open registration challenges, in Redis (like sign-in challenges, DECISIONS.md).

A challenge lives from IssueRegistrationChallenge until RegisterNode ends it
(approved or rejected), its 120 s run out, or the sweep finds its registration's
300 s over; only the ended registration is written to ``node_registrations``.
Keeping the open ones here spares the store a write, a read, a conditional update
and a count over every pending registration for each registration (the dearest
part of RegisterNode on FerretDB).

Keys (prefix ``lucid:nodes:{registrations}:``, one hash slot): ``<id>``, the record as
JSON with a generous TTL (garbage collection only; expiry follows the cluster's
clock), and the sorted set ``pending`` (member id, score its expiry in µs). A Lua
script checks the at-most-``limit``-pending rule and adds the challenge at once,
so concurrent issuers cannot pass the limit; ``claim`` takes a challenge off the
pending set and succeeds for exactly one caller, so one challenge makes at most one
node; its record is dropped once the ended registration is stored, so a lookup
always finds one or the other.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import redis.asyncio as aioredis
import redis.exceptions

from lucid.lib.ratelimit import micros
from lucid.nodes.schema import REDIS_PREFIX
from lucid.nodes.store.registrations import RegistrationRecord
from lucid.runtime.errors import ErrorCode, LucidError

_SLOT = f"{REDIS_PREFIX}{{registrations}}"
"""One hash tag for every key here, so the script and the claim work on a Redis Cluster."""
PENDING = f"{_SLOT}:pending"
KEEP_S = 3600
"""How long past its registration's expiry a challenge's record stays for the sweep."""
_TIMES = ("created_at", "challenge_expires_at", "expires_at")

_ISSUE = """
if redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf') >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[4]))
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[6])
return 1
"""


def _key(registration_id: str) -> str:
    return f"{_SLOT}:{registration_id}"


def _encode(record: RegistrationRecord) -> str:
    doc = dataclasses.asdict(record)
    for name in _TIMES:
        doc[name] = doc[name].timestamp()
    return json.dumps(doc)


def _decode(raw: bytes | str) -> RegistrationRecord:
    doc = json.loads(raw)
    for name in _TIMES:
        doc[name] = datetime.fromtimestamp(doc[name], UTC)
    return RegistrationRecord(**doc)


def _unavailable(exc: redis.exceptions.RedisError) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_CACHE_UNAVAILABLE, f"the registration challenges failed: {exc}"
    )


class ChallengeStore:
    """Open registration challenges."""

    def __init__(self, cache: aioredis.Redis) -> None:
        self._cache = cache
        self._issue = cache.register_script(_ISSUE)

    async def issue(self, record: RegistrationRecord, limit: int, now: datetime) -> bool:
        """Adds a challenge unless ``limit`` registrations are pending at ``now``."""
        ttl_s = max(1, int((record.expires_at - now).total_seconds()) + KEEP_S)
        try:
            added = await self._issue(
                keys=[PENDING, _key(record.registration_id)],
                args=[
                    micros(now.timestamp()),
                    limit,
                    _encode(record),
                    ttl_s,
                    micros(record.expires_at.timestamp()),
                    record.registration_id,
                ],
            )
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        return bool(int(added))

    async def get(self, registration_id: str) -> RegistrationRecord | None:
        """An open challenge, or None."""
        try:
            raw = await self._cache.get(_key(registration_id))
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        return _decode(raw) if raw else None

    async def claim(self, registration_id: str) -> bool:
        """Takes a challenge off the pending ones; True for the one caller that did.
        Its record stays (a second claim finds it and fails) until ``forget``."""
        try:
            removed = await self._cache.zrem(PENDING, registration_id)
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        return bool(removed)

    async def release(self, record: RegistrationRecord) -> None:
        """Puts a claimed challenge back (its registration could not be stored)."""
        try:
            await self._cache.zadd(
                PENDING, {record.registration_id: micros(record.expires_at.timestamp())}
            )
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None

    async def forget(self, registration_id: str) -> None:
        """Drops a claimed challenge's record (its ended registration is stored)."""
        try:
            await self._cache.delete(_key(registration_id))
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None

    async def past(self, now: datetime, limit: int = 500) -> list[RegistrationRecord]:
        """Open challenges whose registration expired by ``now`` (oldest first), claimed:
        each is returned to one caller only, who stores it and calls ``forget``."""
        try:
            ids = await self._cache.zrangebyscore(
                PENDING, "-inf", micros(now.timestamp()), start=0, num=limit
            )
            if not ids:
                return []
            names = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
            raws = await self._cache.mget([_key(i) for i in names])
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        ended = []
        for name, raw in zip(names, raws, strict=True):
            if await self.claim(name) and raw:
                ended.append(_decode(raw))
        return ended
