"""Open registration challenges in Redis (``lucid.nodes.challenges``) and how a
registration ends in ``node_registrations``: the pending limit, one claim per
challenge, the sweep of expired ones; over real gRPC/mTLS, Redis and FerretDB."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from lucid.nodes import schema
from lucid.nodes.alerts import Alerts
from lucid.nodes.callers import Caller
from lucid.nodes.challenges import ChallengeStore
from lucid.nodes.limits import RateLimiter
from lucid.nodes.registration import Registrations
from lucid.nodes.store.nodes import NodeStore
from lucid.nodes.store.pools import PoolStore
from lucid.nodes.store.registrations import RegistrationRecord, RegistrationStore
from lucid.nodes.store.stakes import StakeStore
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.runtime.audit import AuditTrail
from lucid.runtime.datastores import Datastores
from tests.nodes_support import NodeKeys, NodesKit, OffsetClock, nodes_kit
from tests.support import Mesh, details


@pytest.fixture(scope="module")
async def stores(mesh: Mesh) -> AsyncIterator[Datastores]:
    found = Datastores(mesh.settings, mongo=True, redis=True)
    yield found
    await found.close()


@pytest.fixture(scope="module")
async def kit(mesh: Mesh) -> AsyncIterator[NodesKit]:
    async with nodes_kit(mesh, chain=False) as kit:
        yield kit


def record(now: datetime, registration_id: str, ttl_s: int = 300) -> RegistrationRecord:
    return RegistrationRecord(
        registration_id=registration_id,
        node_id=f"node-{registration_id}",
        node_address="T" + "1" * 33,
        owner_user_id="u",
        state=npb.REGISTRATION_STATE_CHALLENGE_ISSUED,
        message="m",
        created_at=now,
        challenge_expires_at=now + timedelta(seconds=120),
        expires_at=now + timedelta(seconds=ttl_s),
    )


async def test_at_most_the_limit_are_pending_and_expired_ones_do_not_count(
    stores: Datastores,
) -> None:
    challenges = ChallengeStore(stores.cache)
    # far ahead of every other test's challenges, which have all expired by then
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    tag = now.strftime("%H%M%S%f")
    assert await challenges.issue(record(now - timedelta(seconds=400), f"old-{tag}"), 3, now)
    for i in range(3):
        assert await challenges.issue(record(now, f"open-{tag}-{i}"), 3, now)
    assert not await challenges.issue(record(now, f"over-{tag}"), 3, now)
    assert await challenges.get(f"over-{tag}") is None  # a refused one is not kept
    kept = await challenges.get(f"open-{tag}-0")
    assert kept == record(now, f"open-{tag}-0")
    assert await challenges.claim(f"open-{tag}-0")
    assert await challenges.issue(record(now, f"after-{tag}"), 3, now)  # room again
    assert not await challenges.issue(record(now, f"over2-{tag}"), 3, now)
    await challenges.release(kept)  # a claim given back counts again
    assert await challenges.claim(f"open-{tag}-0")
    for name in [f"old-{tag}", f"open-{tag}-1", f"open-{tag}-2", f"after-{tag}"]:
        assert await challenges.claim(name)
        await challenges.forget(name)


async def test_a_challenge_is_claimed_once_among_concurrent_claims(stores: Datastores) -> None:
    challenges = ChallengeStore(stores.cache)
    now = datetime.now(UTC)
    name = f"claim-{now.timestamp()}"
    assert await challenges.issue(record(now, name), 1000, now)
    claims = await asyncio.gather(*(challenges.claim(name) for _ in range(10)))
    assert claims.count(True) == 1
    assert await challenges.get(name) is not None  # kept until its ending is stored
    await challenges.forget(name)
    assert await challenges.get(name) is None


async def test_the_sweep_stores_expired_registrations_once(mesh: Mesh, stores: Datastores) -> None:
    db = stores.db
    clock = OffsetClock()
    audit = AuditTrail(db[schema.AUDIT], clock)
    challenges = ChallengeStore(stores.cache)
    registrations = Registrations(
        RegistrationStore(db[schema.REGISTRATIONS]),
        challenges,
        NodeStore(db[schema.NODES]),
        PoolStore(db[schema.POOLS]),
        audit,
        prober=None,  # type: ignore[arg-type]  (the sweep probes nothing)
        clock=clock,
        limiter=RateLimiter(stores.cache, clock),
        alerts=Alerts(audit),
        stakes=StakeStore(db[schema.STAKES]),
        verifier=None,  # type: ignore[arg-type]  (the sweep verifies no stake)
    )
    caller = dataclasses.replace(Caller.cluster(), user_id="sweep-owner")
    issued = await registrations.issue(NodeKeys().address, caller)
    assert await challenges.get(issued.registration_id) == issued
    clock.advance(301)
    assert await registrations.sweep() >= 1
    assert await challenges.get(issued.registration_id) is None
    stored = await db[schema.REGISTRATIONS].find_one({"_id": issued.registration_id})
    assert stored is not None
    assert stored["state"] == npb.REGISTRATION_STATE_EXPIRED
    assert stored["node_address"] == issued.node_address
    await registrations.sweep()  # nothing left of it: no second record, no error
    assert await db[schema.REGISTRATIONS].count_documents({"_id": issued.registration_id}) == 1


async def test_an_ended_registration_cannot_be_used_again(
    kit: NodesKit, stores: Datastores
) -> None:
    op = await kit.operator()
    keys = NodeKeys()
    challenge = await kit.challenge(op, keys)
    request = kit.register_request(challenge, keys)
    first, second = await asyncio.gather(
        kit.nodes.RegisterNode(request, metadata=op.md),
        kit.nodes.RegisterNode(request, metadata=op.md),
        return_exceptions=True,
    )
    outcomes = [r for r in (first, second) if isinstance(r, npb.RegisterNodeResponse)]
    errors = [r for r in (first, second) if isinstance(r, grpc.aio.AioRpcError)]
    assert len(outcomes) == 1
    assert len(errors) == 1
    assert errors[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    stored = await stores.db[schema.REGISTRATIONS].find_one({"_id": challenge.registration_id})
    assert stored is not None
    assert stored["state"] == npb.REGISTRATION_STATE_APPROVED
    assert stored["stake_tx_hash"] == request.stake_tx_hash
    assert stored["stake_verified"]

    with pytest.raises(grpc.aio.AioRpcError) as again:  # once it is stored
        await kit.nodes.RegisterNode(request, metadata=op.md)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(again.value).reason == "LUCID_ERR_4007"
    assert "APPROVED" in str(again.value.details())
