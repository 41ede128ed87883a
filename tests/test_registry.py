"""The service registry against a real Consul agent (``consul agent -dev`` on loopback):
registration with tags and an mTLS gRPC health check, deregistration on stop,
discovery of passing instances only, round-robin across them, and an instance that
drops out while its health fails and comes back when it recovers."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2

from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from lucid.runtime.channels import Channels
from lucid.runtime.config import Settings
from lucid.runtime.contracts import catalog
from lucid.runtime.registry import (
    ConsulRegistry,
    Endpoint,
    StaticRegistry,
    channel_target,
    create_registry,
)
from lucid.runtime.server import ClusterApp, ClusterServer, Runtime
from lucid.supervisor.localservers import free_port
from tests.waiting import eventually


class Marker(gateway_pb2_grpc.GatewayServiceServicer):
    """Answers GetServiceInfo with the name of the instance that served it."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def GetServiceInfo(
        self, request: gateway_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetServiceInfoResponse:
        return gateway_pb2.GetServiceInfoResponse(service_name=self.name)


@pytest.fixture
def consul_settings(settings: Settings, consul_agent: str) -> Settings:
    """Settings that register in Consul, with checks fast enough for a test."""
    return settings.replace(
        registry="consul",
        consul_addr=consul_agent,
        consul_check_interval_s=0.5,
        consul_check_timeout_s=2.0,
        consul_cache_s=0.0,
    )


@pytest.fixture
async def gateways(consul_settings: Settings) -> AsyncIterator[list[ClusterServer]]:
    """Three gateway instances registered in Consul, on ports of their own."""
    servers = []
    for n in range(3):
        runtime = Runtime(consul_settings, "gateway")
        app = ClusterApp(
            servicers=[(gateway_pb2_grpc.add_GatewayServiceServicer_to_server, Marker(f"g{n}"))],
            requires_mongo=False,
            requires_redis=False,
        )
        server = ClusterServer(runtime, app, port=free_port())
        await server.start()
        servers.append(server)
    try:
        yield servers
    finally:
        for server in servers:
            await server.stop(grace_s=0.2)


async def test_static_registry_resolves_the_port_map(settings: Settings) -> None:
    registry = create_registry(settings)
    assert isinstance(registry, StaticRegistry)
    assert await registry.resolve("auth") == [Endpoint(settings.host, settings.port("auth"))]
    assert await registry.resolve("nowhere") == []


def test_channel_target_lists_every_instance() -> None:
    one = Endpoint("127.0.0.1", 1)
    two = Endpoint("127.0.0.1", 2)
    assert channel_target([one]) == "127.0.0.1:1"
    assert channel_target([two, one, two]) == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert channel_target([Endpoint("::1", 3), Endpoint("::1", 4)]) == "ipv6:[::1]:3,[::1]:4"
    assert channel_target([Endpoint("b.example", 1), Endpoint("a.example", 2)]) == "a.example:2"


async def test_registration_carries_tags_meta_and_a_passing_mtls_grpc_check(
    consul_settings: Settings, gateways: list[ClusterServer]
) -> None:
    registry = ConsulRegistry(consul_settings)
    try:
        # Passing means Consul's gRPC check completed the mTLS handshake with the
        # agent's client certificate and got SERVING from grpc.health.v1.
        async def all_passing() -> bool:
            return len(await registry.instances("gateway")) == 3

        await eventually(all_passing, what="three passing gateway instances")
        services = {s["ID"]: s for s in await registry.instances("gateway")}
        server = gateways[0]
        assert server.instance is not None
        mine = services[server.instance.instance_id]
        assert mine["Port"] == server.port
        assert mine["Address"] == "127.0.0.1"
        assert set(mine["Tags"]) == {
            "cluster:gateway",
            "plane:ops",
            f"version:{mine['Meta']['version']}",
        }
        assert mine["Meta"]["cluster"] == "gateway"
        assert mine["Meta"]["plane"] == "ops"
        _, checks = await registry.client.health.checks("gateway")
        mine_check = next(c for c in checks if c["ServiceID"] == server.instance.instance_id)
        assert mine_check["Type"] == "grpc"
        assert mine_check["Status"] == "passing"

        await server.stop(grace_s=0.2)
        gateways.remove(server)
        _, catalog_entries = await registry.client.catalog.service("gateway")
        assert server.instance.instance_id not in {e["ServiceID"] for e in catalog_entries}
        assert len(await registry.resolve("gateway")) == 2
    finally:
        await registry.close()


async def _served_by(channels: Channels, calls: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(calls):
        stub = await channels.stub("gateway", gateway_pb2_grpc.GatewayServiceStub)
        response = await stub.GetServiceInfo(gateway_pb2.GetServiceInfoRequest(), timeout=10)
        counts[response.service_name] += 1
    return counts


async def _warm(channels: Channels, expected: set[str]) -> None:
    """Calls until every expected instance has answered (all subchannels connected)."""

    async def all_seen() -> bool:
        return set(await _served_by(channels, 2 * len(expected))) == expected

    await eventually(all_seen, what=f"calls reaching {sorted(expected)}")


async def test_calls_spread_round_robin_and_an_unhealthy_instance_drops_out(
    consul_settings: Settings, gateways: list[ClusterServer]
) -> None:
    registry = ConsulRegistry(consul_settings)
    channels = Channels(consul_settings, identity="admin", registry=registry, catalog=catalog())
    try:

        async def passing(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return len(await registry.resolve("gateway")) == count

            return check

        await eventually(await passing(3), what="three passing instances")
        await _warm(channels, {"g0", "g1", "g2"})
        assert await _served_by(channels, 300) == {"g0": 100, "g1": 100, "g2": 100}

        sick = gateways[1]
        await sick.health.servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await eventually(await passing(2), what="the failing instance dropping out")
        assert sick.port not in {e.port for e in await registry.resolve("gateway")}
        await _warm(channels, {"g0", "g2"})
        assert await _served_by(channels, 200) == {"g0": 100, "g2": 100}

        await sick.health.servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await eventually(await passing(3), what="the recovered instance coming back")
        await _warm(channels, {"g0", "g1", "g2"})
        assert await _served_by(channels, 300) == {"g0": 100, "g1": 100, "g2": 100}
    finally:
        await channels.close()
        await registry.close()


async def test_no_passing_instance_means_no_endpoint(consul_settings: Settings) -> None:
    registry = ConsulRegistry(consul_settings)
    channels = Channels(consul_settings, identity="admin", registry=registry, catalog=catalog())
    try:
        assert await registry.resolve("payments") == []
        with pytest.raises(LookupError):
            await channels.channel("payments")
    finally:
        await channels.close()
        await registry.close()
