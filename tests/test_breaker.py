"""Circuit breakers in the channel layer: a counting upstream behind real mTLS, a fake
clock. Five failures open the breaker; an open breaker fails fast with UNAVAILABLE 5007
and never reaches the upstream; after 30 s a bounded number of trial calls go through;
two successes close it, a failed trial opens it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc

from lucid.lib.clock import FakeClock
from lucid.runtime.breaker import Breakers, State
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
        assert info.retry_after_s is not None and 0 < info.retry_after_s <= 30
        assert counting.calls == 5, "an open breaker must not reach the upstream"

        clock.advance(29.0)
        assert await _call(channels) == grpc.StatusCode.UNAVAILABLE
        assert counting.calls == 5

        # 30 s after opening: half-open, two trial calls at a time, the rest fail fast
        clock.advance(1.0)
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
        clock.advance(30.0)
        assert breaker.state is State.HALF_OPEN
        assert await _call(channels) == grpc.StatusCode.UNAVAILABLE  # the trial fails
        assert counting.calls == 6
        assert breaker.state is State.OPEN
        clock.advance(10.0)
        assert await _call(channels) == grpc.StatusCode.UNAVAILABLE
        assert counting.calls == 6, "open again for a full 30 s"
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


def test_per_cluster_policies_follow_spec_10() -> None:
    breakers = Breakers(FakeClock())
    assert (breakers.of("auth").policy.failure_threshold, breakers.of("auth").policy.open_s) == (
        5,
        30.0,
    )
    blockchain = breakers.of("blockchain").policy
    assert (blockchain.failure_threshold, blockchain.open_s) == (3, 60.0)
    payments = breakers.of("payments").policy
    assert (payments.failure_threshold, payments.open_s) == (10, 30.0)
