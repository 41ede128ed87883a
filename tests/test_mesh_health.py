"""The mesh's aggregated health (issue 8, item 3): one fan-out in the gateway, cached for
1 s, with the chain validators in it (one down → degraded, two → unhealthy), never
through a breaker; the edge's ``/health`` delegates to it.

The three validators here are stand-ins that serve only ``grpc.health.v1`` with the
blockchain cluster's certificate on the validator ports (what the aggregation probes);
``tests/test_supervisor.py`` checks the same against three real validator processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from lucid.gateway import app as gateway_app
from lucid.gateway.health import HealthAggregator
from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from lucid.lib.clock import FakeClock
from lucid.runtime.breaker import State
from lucid.runtime.channels import Channels
from lucid.runtime.config import Settings
from lucid.runtime.contracts import catalog
from lucid.runtime.registry import StaticRegistry
from lucid.runtime.server import ClusterServer, Runtime
from lucid.supervisor.localservers import free_port
from tests.chain_cluster import consecutive_free_ports
from tests.support import (
    details,
    https_client,
    operator_channel,
    serve_edge,
    serve_health_only,
)

HEALTHY = gateway_pb2.HEALTH_STATUS_HEALTHY
DEGRADED = gateway_pb2.HEALTH_STATUS_DEGRADED


@dataclass
class Setup:
    """A gateway on a fake clock and three validator stand-ins."""

    settings: Settings
    clock: FakeClock
    health: HealthAggregator
    validators: list[ClusterServer | None]

    async def stop_validator(self, index: int) -> None:
        server = self.validators[index]
        assert server is not None
        await server.stop(grace_s=0.1)
        self.validators[index] = None

    async def get(self) -> gateway_pb2.GetHealthResponse:
        async with operator_channel(self.settings, "gateway") as channel:
            reply: gateway_pb2.GetHealthResponse = await gateway_pb2_grpc.GatewayServiceStub(
                channel
            ).GetHealth(gateway_pb2.GetHealthRequest(), timeout=10)
        return reply


@pytest.fixture
async def setup(settings: Settings) -> AsyncIterator[Setup]:
    own = settings.replace(
        validators=3,
        extra_validator_port=consecutive_free_ports(2),
        ports={**settings.ports, "gateway": free_port(), "blockchain": free_port()},
    )
    validators: list[ClusterServer | None] = []
    for index in range(3):
        at = own.replace(ports={**own.ports, "blockchain": own.validator_port(index)})
        validators.append(await serve_health_only(at, "blockchain"))
    clock = FakeClock()
    runtime = Runtime(own, "gateway", clock=clock)
    app = await gateway_app.build(runtime)
    gateway = ClusterServer(runtime, app, port=own.port("gateway"))
    await gateway.start()
    service = app.servicers[0][1]
    try:
        yield Setup(own, clock, service.health, validators)  # type: ignore[attr-defined]
    finally:
        await gateway.stop(grace_s=0.1)
        for server in validators:
            if server is not None:
                await server.stop(grace_s=0.1)


def _by_name(reply: gateway_pb2.GetHealthResponse) -> dict[str, gateway_pb2.DependencyHealth]:
    return {d.name: d for d in reply.dependencies}


async def test_validators_decide_finality_one_down_degraded_two_down_unhealthy(
    setup: Setup,
) -> None:
    deps = _by_name(await setup.get())
    assert [deps[f"validator-{i}"].status for i in range(3)] == [HEALTHY] * 3
    assert deps["finality"].required and deps["finality"].status == HEALTHY
    assert deps["mongodb"].status == HEALTHY and deps["redis"].status == HEALTHY

    await setup.stop_validator(2)
    setup.clock.advance(1.0)
    reply = await setup.get()
    deps = _by_name(reply)
    assert reply.status == DEGRADED
    assert deps["validator-2"].status == DEGRADED and "unreachable" in deps["validator-2"].message
    assert deps["finality"].status == DEGRADED
    assert deps["finality"].message.startswith("2 of 3 validators serving")

    await setup.stop_validator(1)
    setup.clock.advance(1.0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await setup.get()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = details(caught.value)
    assert info.reason == "LUCID_ERR_5002"
    assert info.metadata["dependencies"] == "finality"
    assert "finality" in info.message


async def test_one_round_of_probes_per_second_whatever_the_callers(setup: Setup) -> None:
    before = setup.health.rounds
    replies = await asyncio.gather(*(setup.get() for _ in range(20)))
    for _ in range(5):
        replies.append(await setup.get())
    assert setup.health.rounds == before + 1
    assert len({r.check_time.ToNanoseconds() for r in replies}) == 1
    setup.clock.advance(0.9)
    await setup.get()
    assert setup.health.rounds == before + 1, "a report younger than 1 s is reused"
    setup.clock.advance(0.1)
    await setup.get()
    assert setup.health.rounds == before + 2


async def test_gateway_health_passes_an_open_breaker(setup: Setup) -> None:
    """The edge calls GetHealth through its channel layer: an open breaker to the gateway
    (refusing GetVersion) lets the health call through and is not counted by it."""
    channels = Channels(
        setup.settings,
        identity="edge",
        registry=StaticRegistry(setup.settings),
        catalog=catalog(),
        clock=setup.clock,
    )
    breaker = channels.breakers.of("gateway")
    try:
        for _ in range(breaker.policy.failure_threshold):
            breaker.record(grpc.StatusCode.UNAVAILABLE, breaker.acquire())
        assert breaker.state is State.OPEN
        stub = await channels.stub("gateway", gateway_pb2_grpc.GatewayServiceStub)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetVersion(gateway_pb2.GetVersionRequest())
        assert details(caught.value).reason == "LUCID_ERR_5007"
        reply = await stub.GetHealth(gateway_pb2.GetHealthRequest(), timeout=10)
        assert _by_name(reply)["finality"].status == HEALTHY
        assert breaker.state is State.OPEN and breaker.rejected == 1
    finally:
        await channels.close()


async def test_edge_health_delegates_to_the_gateway(setup: Setup) -> None:
    before = setup.health.rounds
    async with serve_edge(setup.settings) as url, https_client(setup.settings) as http:
        bodies = []
        for _ in range(10):
            async with http.get(f"{url}/health") as response:
                assert response.status == 200, await response.text()
                bodies.append(await response.json())
        assert setup.health.rounds == before + 1, "ten /health requests, one round of probes"
        names = {d["name"] for d in bodies[0]["dependencies"]}
        assert {"mongodb", "redis", "finality", "validator-0", "validator-2", "auth"} <= names

        await setup.stop_validator(0)
        await setup.stop_validator(1)
        setup.clock.advance(1.0)
        async with http.get(f"{url}/health") as response:
            assert response.status == 503
            error = (await response.json())["error"]
    assert error["code"] == "LUCID_ERR_5002"
    assert "finality" in error["message"]
