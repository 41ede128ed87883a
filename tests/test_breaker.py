"""Circuit breakers in the channel layer: a counting upstream behind real mTLS, a fake
clock. Five failures open the breaker; an open breaker fails fast with UNAVAILABLE 5007
and never reaches the upstream; after 1 s a bounded number of trial calls go through;
two successes close it, a failed trial opens it again. Failures older than a success
never open it; health checks never pass through it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.lib.clock import FakeClock
from lucid.runtime.breaker import BreakerPolicy, Breakers, CircuitBreaker, State
from lucid.runtime.channels import Channels
from lucid.runtime.config import Settings
from lucid.runtime.contracts import catalog
from lucid.runtime.registry import StaticRegistry
from lucid.runtime.server import ClusterApp, Runtime
from lucid.runtime.tokens import CallbackKeySource
from lucid.supervisor.localservers import free_port
from tests.support import Mesh, details

ADDRESS = "TJw1nrK1G5ugxRAuVPUFTcHrSZM8AjjKaH"


class Counting(auth_pb2_grpc.AuthServiceServicer):
    """IssueChallenge counts every call that arrives; fails while ``failing``."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = True
        self.gate: asyncio.Event | None = None
        self.arrived: asyncio.Queue[int] = asyncio.Queue()

    async def IssueChallenge(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        self.arrived.put_nowait(self.calls)
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "upstream sick")
        return auth_pb2.IssueChallengeResponse(message="m", nonce="n")


@pytest.fixture
async def upstream(settings: Settings) -> AsyncIterator[tuple[Settings, Counting]]:
    own = settings.replace(ports={**settings.ports, "auth": free_port()})
    servicer = Counting()

    async def build(runtime: Runtime) -> ClusterApp:
        async def no_keys() -> list:  # type: ignore[type-arg]
            return []

        return ClusterApp(
            servicers=[(auth_pb2_grpc.add_AuthServiceServicer_to_server, servicer)],
            requires_mongo=False,
            key_source=CallbackKeySource(no_keys),
        )

    mesh = Mesh(own)
    await mesh.start("auth", build)
    try:
        yield own, servicer
    finally:
        await mesh.stop_all()


def _channels(settings: Settings, clock: FakeClock) -> Channels:
    return Channels(
        settings,
        identity="sessions",
        registry=StaticRegistry(settings),
        catalog=catalog(),
        clock=clock,
    )


async def _call(channels: Channels, address: str = ADDRESS) -> grpc.StatusCode:
    stub = await channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
    try:
        await stub.IssueChallenge(auth_pb2.IssueChallengeRequest(tron_address=address))
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_breaker_opens_fails_fast_half_opens_and_closes(
    upstream: tuple[Settings, Counting],
) -> None:
    settings, counting = upstream
    clock = FakeClock()
    channels = _channels(settings, clock)
    breaker = channels.breakers.of("auth")
    try:
        for _ in range(5):
            assert await _call(channels) == grpc.StatusCode.UNAVAILABLE
        assert counting.calls == 5
        assert breaker.state is State.OPEN

        stub = await channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueChallenge(auth_pb2.IssueChallengeRequest(tron_address=ADDRESS))
        info = details(caught.value)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info.reason == "LUCID_ERR_5007"
        assert info.metadata["upstream"] == "auth"
        assert info.retry_after_s is not None and 0 < info.retry_after_s <= 1
        assert counting.calls == 5, "an open breaker must not reach the upstream"

        clock.advance(0.9)
        assert await _call(channels) == grpc.StatusCode.UNAVAILABLE
        assert counting.calls == 5

        # 1 s after opening: half-open, two trial calls at a time, the rest fail fast
        clock.advance(0.1)
        counting.failing = False
        counting.gate = asyncio.Event()
        trials = [asyncio.create_task(_call(channels)) for _ in range(2)]
        while not counting.arrived.empty():
            counting.arrived.get_nowait()
        for _ in range(2):
            await asyncio.wait_for(counting.arrived.get(), 30)
        assert counting.calls == 7
        assert breaker.state is State.HALF_OPEN
        assert await _call(channels) == grpc.StatusCode.UNAVAILABLE  # third: refused
        assert counting.calls == 7
        counting.gate.set()
        counting.gate = None
        assert await asyncio.gather(*trials) == [grpc.StatusCode.OK] * 2
        assert breaker.state is State.CLOSED

        assert await _call(channels) == grpc.StatusCode.OK
        assert counting.calls == 8
    finally:
        await channels.close()


async def test_failed_trial_opens_the_breaker_again(upstream: tuple[Settings, Counting]) -> None:
    settings, counting = upstream
    clock = FakeClock()
    channels = _channels(settings, clock)
    breaker = channels.breakers.of("auth")
    try:
        for _ in range(5):
            await _call(channels)
        clock.advance(1.0)
        assert breaker.state is State.HALF_OPEN
        assert await _call(channels) == grpc.StatusCode.UNAVAILABLE  # the trial fails
        assert counting.calls == 6
        assert breaker.state is State.OPEN
        clock.advance(0.5)
        assert await _call(channels) == grpc.StatusCode.UNAVAILABLE
        assert counting.calls == 6, "open again for a full second"
    finally:
        await channels.close()


async def test_request_errors_do_not_open_the_breaker(upstream: tuple[Settings, Counting]) -> None:
    settings, counting = upstream
    channels = _channels(settings, FakeClock())
    try:
        for _ in range(8):  # refused by validation: INVALID_ARGUMENT is the caller's fault
            assert await _call(channels, address="not-an-address") == (
                grpc.StatusCode.INVALID_ARGUMENT
            )
        assert channels.breakers.of("auth").state is State.CLOSED
        for _ in range(4):
            await _call(channels)
        counting.failing = False
        assert await _call(channels) == grpc.StatusCode.OK  # a success resets the count
        counting.failing = True
        for _ in range(4):
            await _call(channels)
        assert channels.breakers.of("auth").state is State.CLOSED
    finally:
        await channels.close()


def test_per_cluster_thresholds_follow_spec_10_and_every_breaker_retries_within_1s() -> None:
    breakers = Breakers(FakeClock())
    thresholds = {c: breakers.of(c).policy.failure_threshold for c in ("auth", "blockchain")}
    assert thresholds == {"auth": 5, "blockchain": 3}
    assert breakers.of("payments").policy.failure_threshold == 10
    for cluster in ("auth", "blockchain", "payments", "sessions"):
        assert breakers.of(cluster).policy.open_s <= 1.0, cluster


def test_failures_of_calls_sent_before_a_success_never_open_it() -> None:
    """The 47 s outage of issue 8: calls in flight when the upstream died fail after it
    is back; those stale failures must not open a breaker that has seen a success."""
    breaker = CircuitBreaker("sessions", BreakerPolicy(), FakeClock())
    stale = [breaker.acquire() for _ in range(5)]
    breaker.record(grpc.StatusCode.OK, breaker.acquire())
    for ticket in stale:
        breaker.record(grpc.StatusCode.UNAVAILABLE, ticket)
    assert breaker.state is State.CLOSED and breaker.failures == 0

    fresh = [breaker.acquire() for _ in range(5)]
    for ticket in fresh:
        breaker.record(grpc.StatusCode.UNAVAILABLE, ticket)
    assert breaker.state is State.OPEN, "failures after the last success still count"


def test_stale_failures_do_not_reopen_a_breaker_that_closed() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("sessions", BreakerPolicy(), clock)
    before = [breaker.acquire() for _ in range(10)]
    for ticket in before[:5]:
        breaker.record(grpc.StatusCode.UNAVAILABLE, ticket)
    assert breaker.state is State.OPEN
    clock.advance(1.0)
    for _ in range(2):
        breaker.record(grpc.StatusCode.OK, breaker.acquire())
    assert breaker.state is State.CLOSED
    for ticket in before[5:]:
        breaker.record(grpc.StatusCode.UNAVAILABLE, ticket)
    assert breaker.state is State.CLOSED


async def test_health_checks_pass_an_open_breaker_and_never_count(
    upstream: tuple[Settings, Counting],
) -> None:
    settings, counting = upstream
    clock = FakeClock()
    channels = _channels(settings, clock)
    breaker = channels.breakers.of("auth")
    try:
        for _ in range(5):
            await _call(channels)
        assert breaker.state is State.OPEN
        health = await channels.stub("auth", health_pb2_grpc.HealthStub)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert breaker.state is State.OPEN and breaker.rejected == 0
        assert counting.calls == 5, "a health check is not a trial call"
    finally:
        await channels.close()

    dead = settings.replace(ports={**settings.ports, "auth": free_port()})
    channels = _channels(dead, clock)
    try:
        health = await channels.stub("auth", health_pb2_grpc.HealthStub)
        for _ in range(8):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert channels.breakers.of("auth").state is State.CLOSED
        assert channels.breakers.of("auth").failures == 0
    finally:
        await channels.close()
