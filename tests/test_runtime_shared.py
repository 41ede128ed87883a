"""The runtime's shared parts every cluster uses, against the real FerretDB and Redis:
the sealed key store, the per-caller limiter and the audit trail."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.lib.clock import FakeClock
from lucid.lib.ratelimit import Policy
from lucid.lib.sealing import Sealer, SealError
from lucid.runtime import keystore
from lucid.runtime.audit import FAILURE, SUCCESS, AuditTrail, Client, Event
from lucid.runtime.config import Settings
from lucid.runtime.context import Principal
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.grouped import GroupedInserts
from lucid.runtime.identity import ServiceIdentity
from lucid.runtime.limits import Limit, RateLimiter
from lucid.runtime.schema import ensure_schema
from tests.waiting import eventually


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    name = f"shared_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def _make() -> tuple[bytes, str]:
    secret = uuid.uuid4().bytes
    return secret, secret.hex()


async def test_instances_racing_for_the_first_key_share_one(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    await ensure_schema(db, [keystore.collection_spec("keys", owner="test")])
    sealer, clock = Sealer("test passphrase"), FakeClock()
    stores = [keystore.SealedKeyStore(db["keys"], sealer, clock) for _ in range(4)]
    keys = await asyncio.gather(*(s.current("signing", _make) for s in stores))
    assert len({k.key_id for k in keys}) == 1
    assert await db["keys"].count_documents({}) == 1
    stored = await db["keys"].find_one({})
    assert stored is not None and keys[0].secret not in bytes(stored["sealed"])
    assert keys[0].public == keys[0].secret.hex()


async def test_rotation_retires_keys_that_stay_readable_until_they_expire(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    await ensure_schema(db, [keystore.collection_spec("keys", owner="test")])
    clock = FakeClock()
    store = keystore.SealedKeyStore(db["keys"], Sealer("test passphrase"), clock)
    first = await store.current("signing", _make)
    second = await store.rotate("signing", _make, verify_for_s=60)
    assert second.key_id != first.key_id
    assert (await store.current("signing", _make)).key_id == second.key_id
    fresh = keystore.SealedKeyStore(db["keys"], Sealer("test passphrase"), clock)
    assert (await fresh.by_id(first.key_id)).secret == first.secret
    assert [k.key_id for k in await fresh.published("signing")] == [second.key_id, first.key_id]
    clock.advance(61)
    assert [k.key_id for k in await fresh.published("signing")] == [second.key_id]
    with pytest.raises(keystore.UnknownKeyError):
        await fresh.by_id("signing-nope")
    wrong = keystore.SealedKeyStore(db["keys"], Sealer("another passphrase"), clock)
    with pytest.raises(SealError):
        await wrong.by_id(first.key_id)


async def test_the_limiter_refuses_past_the_limit_with_a_retry(redis: aioredis.Redis) -> None:
    clock = FakeClock()
    limiter = RateLimiter(redis, clock, f"test{uuid.uuid4().hex[:6]}")
    limit = Limit("login", Policy(limit=3, window_s=60.0))
    for _ in range(3):
        await limiter.enforce(limit, "203.0.113.9")
    with pytest.raises(LucidError) as caught:
        await limiter.enforce(limit, "203.0.113.9")
    assert caught.value.code == ErrorCode.ERROR_CODE_RATE_LIMITED
    assert caught.value.retry_after_s == pytest.approx(20.0, abs=0.01)
    assert caught.value.metadata["limit"] == "3"
    await limiter.enforce(limit, "203.0.113.10")  # another caller is not affected
    clock.advance(20)
    await limiter.enforce(limit, "203.0.113.9")  # the rate refills continuously


async def test_the_audit_trail_records_outcomes_and_refuses_changes_it_cannot_record(
    db: AsyncDatabase[dict[str, Any]], settings: Settings
) -> None:
    trail = AuditTrail(db["audit"], FakeClock())
    peer = Principal(ServiceIdentity("operations", "admin"))
    client = Client(peer, "198.51.100.7", "curl/8", "req-1")
    async with trail.event("rotate", client, resource="k1"):
        pass
    with pytest.raises(LucidError):
        async with trail.event("rotate", client, resource="k2"):
            raise LucidError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, "no")
    events = {e["resource"]: e async for e in db["audit"].find({})}
    assert events["k1"]["result"] == SUCCESS and events["k1"]["ip_address"] == "198.51.100.7"
    assert events["k2"]["result"] == FAILURE and events["k2"]["reason"].startswith("LUCID_ERR_")
    event_id = await trail.begin(Event("drop", resource="t"), client)
    await trail.finish(event_id, SUCCESS)
    assert (await db["audit"].find_one({"_id": event_id}) or {})["result"] == SUCCESS

    unreachable: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200"
    )
    try:
        broken = AuditTrail(unreachable["x"]["audit"], FakeClock())
        with pytest.raises(LucidError) as caught:
            await broken.begin(Event("drop", resource="t"), client)
        assert caught.value.code == ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE
    finally:
        await unreachable.close()


class _CountedInserts:
    """A collection that counts the inserts sent to the real one."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self.batches: list[int] = []

    async def insert_many(self, docs: list[dict[str, Any]], **kwargs: Any) -> Any:
        self.batches.append(len(docs))
        return await self.collection.insert_many(docs, **kwargs)


async def test_concurrent_audit_records_share_inserts_and_are_stored_when_each_returns(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    counted = _CountedInserts(db["audit"])
    trail = AuditTrail(counted, FakeClock())  # type: ignore[arg-type]
    client = Client(Principal(ServiceIdentity("operations", "admin")), "198.51.100.7", "", "r")
    stored: list[bool] = []

    async def one(n: int) -> None:
        async with trail.event("login", client, resource=f"r{n}"):
            pass
        stored.append(await db["audit"].find_one({"resource": f"r{n}"}) is not None)

    await asyncio.gather(*(one(n) for n in range(40)))
    assert stored == [True] * 40  # each record was in the store when its writer went on
    assert sum(counted.batches) == 40
    assert len(counted.batches) < 40  # grouped: fewer round trips than records
    # alone, a record goes at once, in a batch of its own
    await trail.begin(Event("drop", resource="alone"), client)
    assert counted.batches[-1] == 1
    # a writer cancelled while waiting does not take its record back
    waiting = asyncio.create_task(trail.begin(Event("drop", resource="cancelled"), client))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await eventually(
        lambda: db["audit"].find_one({"resource": "cancelled"}), what="the cancelled record"
    )


async def test_grouped_inserts_fail_only_the_documents_that_fail(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    await db["users"].create_index("address", unique=True)
    counted = _CountedInserts(db["users"])
    inserts = GroupedInserts(counted)  # type: ignore[arg-type]
    docs = [{"_id": f"u{n}", "address": f"T{n % 9}"} for n in range(10)]  # u9 repeats u0's
    outcomes = await asyncio.gather(*(inserts.insert(d) for d in docs), return_exceptions=True)
    failed = [n for n, outcome in enumerate(outcomes) if outcome is not None]
    assert len(failed) == 1 and failed[0] in (0, 9)
    assert isinstance(outcomes[failed[0]], DuplicateKeyError)  # as insert_one raises it
    assert await db["users"].count_documents({}) == 9
    assert len(counted.batches) < 10

    unreachable: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200"
    )
    try:
        broken = GroupedInserts(unreachable["x"]["users"])
        outcomes = await asyncio.gather(
            *(broken.insert({"_id": n}) for n in range(3)), return_exceptions=True
        )
        assert all(isinstance(outcome, PyMongoError) for outcome in outcomes)
    finally:
        await unreachable.close()
