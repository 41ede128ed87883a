"""``lucid.mesh.v1.SidecarService`` over real gRPC/mTLS against real Envoy sidecars
(``lucid.supervisor.sidecars``): a configuration is rendered onto the sidecar's listeners
and Envoy swaps them (an AUTH policy's DENY rule refuses calls at the sidecar, disabling
it lets them through again), health and metrics come from the sidecar's admin endpoint
and access log, and every refused change stores nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.common.v1 import access_pb2
from lucid.mesh.v1 import (
    discovery_pb2,
    discovery_pb2_grpc,
    policy_pb2,
    sidecar_pb2,
    sidecar_pb2_grpc,
)
from lucid.runtime.config import Settings
from lucid.runtime.server import ClusterServer
from lucid.supervisor.localservers import free_port
from lucid.supervisor.sidecars import SidecarLayout, forget_sidecars, running_sidecars
from tests.support import Mesh, details, operator_channel, serve_health_only
from tests.waiting import eventually

BEHIND = "nodes"
"""The cluster running behind a real Envoy sidecar (a health-only server)."""
STOPPED = "rdp"
"""A cluster whose sidecar site is written but whose Envoy is not running."""
WITHOUT = "admin"
"""A cluster running without a sidecar."""
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


@dataclass
class World:
    settings: Settings
    mesh: Mesh
    layout: SidecarLayout
    services: dict[str, str]
    """Cluster → its registration's service id."""

    def stub(self, identity: str) -> tuple[grpc.aio.Channel, sidecar_pb2_grpc.SidecarServiceStub]:
        channel = self.mesh.channel("mesh", identity)
        return channel, sidecar_pb2_grpc.SidecarServiceStub(channel)

    async def health_via_sidecar(self) -> health_pb2.HealthCheckResponse:
        """A health check of ``BEHIND`` through its sidecar (RBAC lets any mesh identity
        reach health)."""
        async with operator_channel(self.settings, BEHIND) as channel:
            return await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )

    async def health(self, cluster: str = BEHIND) -> sidecar_pb2.GetSidecarHealthResponse:
        channel, stub = self.stub(cluster)
        async with channel:
            return await stub.GetSidecarHealth(
                sidecar_pb2.GetSidecarHealthRequest(service_id=self.services[cluster])
            )


async def _register(mesh: Mesh, cluster: str, plane: int, port: int) -> str:
    service_id = str(uuid.uuid4())
    request = discovery_pb2.RegisterServiceRequest(
        service_id=service_id,
        service_name=f"{cluster}-svc",
        cluster=access_pb2.Cluster.Value(f"CLUSTER_{cluster.upper()}"),
        plane=plane,
        endpoint=discovery_pb2.Endpoint(
            host="127.0.0.1", port=port, protocol=discovery_pb2.ENDPOINT_PROTOCOL_GRPCS
        ),
        version="1.0.0",
    )
    async with mesh.channel("mesh", cluster) as channel:
        await discovery_pb2_grpc.ServiceDiscoveryServiceStub(channel).RegisterService(request)
    return service_id


@pytest.fixture(scope="module")
async def world(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    # a var dir of its own (the sidecar site files the mesh reads), the session's certificates
    var_dir = tmp_path_factory.mktemp("sidecar-service")
    (var_dir / "certs").symlink_to(settings.certs_dir.resolve())
    own = settings.replace(
        var_dir=var_dir,
        ports={**settings.ports, **{c: free_port() for c in ("mesh", BEHIND, STOPPED, WITHOUT)}},
    )
    mesh = Mesh(own)
    await mesh.start("mesh")
    layout = SidecarLayout.allocate(own, clusters=(BEHIND, STOPPED))
    layout.write(own, STOPPED, var_dir / "envoy")  # a site whose Envoy never runs
    behind: ClusterServer = await serve_health_only(layout.cluster_settings(own, BEHIND), BEHIND)
    try:
        async with running_sidecars(own, layout, (BEHIND,)):
            services = {
                BEHIND: await _register(mesh, BEHIND, access_pb2.PLANE_OPS, own.port(BEHIND)),
                STOPPED: await _register(mesh, STOPPED, access_pb2.PLANE_OPS, own.port(STOPPED)),
                WITHOUT: await _register(mesh, WITHOUT, access_pb2.PLANE_OPS, own.port(WITHOUT)),
            }
            yield World(own, mesh, layout, services)
    finally:
        await behind.stop(grace_s=0.2)
        await mesh.stop_all()


def _deny_health(enabled: bool) -> sidecar_pb2.SidecarPolicy:
    return sidecar_pb2.SidecarPolicy(
        policy_id="no-health",
        type=sidecar_pb2.SIDECAR_POLICY_TYPE_AUTH,
        enabled=enabled,
        priority=500,
        rules=[
            sidecar_pb2.SidecarRule(
                action=sidecar_pb2.SIDECAR_ACTION_DENY,
                match=policy_pb2.RequestMatch(path="/grpc.health.v1.Health/*"),
            )
        ],
    )


async def test_health_reports_the_running_sidecar(world: World) -> None:
    health = await world.health()
    assert health.service_id == world.services[BEHIND]
    assert health.status == discovery_pb2.INSTANCE_STATUS_HEALTHY
    assert health.uptime.seconds >= 0 and health.HasField("check_time")
    upstreams = {u.service_name: u for u in health.upstreams}
    assert upstreams[BEHIND].state == policy_pb2.BREAKER_STATE_CLOSED  # the app behind it
    # a service asking without an id gets its own sidecar
    channel, stub = world.stub(BEHIND)
    async with channel:
        own = await stub.GetSidecarHealth(sidecar_pb2.GetSidecarHealthRequest())
    assert own.service_id == world.services[BEHIND]


async def test_configure_applies_to_envoy_and_metrics_read_its_traffic(world: World) -> None:
    before = (await world.health()).config_version
    channel, stub = world.stub(BEHIND)
    async with channel:
        reply = await stub.ConfigureSidecar(
            sidecar_pb2.ConfigureSidecarRequest(
                service_id=world.services[BEHIND],
                routing=sidecar_pb2.RoutingConfig(
                    timeouts=policy_pb2.TimeoutConfig(request_timeout_ms=15000)
                ),
                monitoring=sidecar_pb2.MonitoringConfig(
                    metrics_enabled=True, access_log_enabled=True
                ),
            )
        )
    assert reply.config.config_version == before + 1
    # the version Envoy reports in force is the new one
    assert (await world.health()).config_version == before + 1
    calls = 5
    for _ in range(calls):
        assert (await world.health_via_sidecar()).status == health_pb2.HealthCheckResponse.SERVING

    async def logged() -> sidecar_pb2.GetSidecarMetricsResponse | None:
        channel, stub = world.stub(BEHIND)
        async with channel:
            metrics = await stub.GetSidecarMetrics(
                sidecar_pb2.GetSidecarMetricsRequest(
                    service_id=world.services[BEHIND], time_range_seconds=60
                )
            )
        return metrics if metrics.requests_by_status.get("OK", 0) >= calls else None

    metrics = await eventually(logged, timeout_s=15, what="the sidecar's access log")
    assert metrics.time_range.seconds == 60
    assert metrics.total_requests >= calls
    assert metrics.request_rate == pytest.approx(metrics.total_requests / 60)
    assert metrics.latency_p99_ms >= metrics.latency_p50_ms >= 0
    assert metrics.total_connections >= 1
    # every sidecar together (the stopped one is skipped)
    channel, stub = world.stub("gateway")
    async with channel:
        together = await stub.GetSidecarMetrics(sidecar_pb2.GetSidecarMetricsRequest())
    assert together.total_requests >= metrics.total_requests
    assert together.time_range.seconds == 900


async def test_an_auth_policy_denies_at_the_sidecar_until_disabled(world: World) -> None:
    channel, stub = world.stub(BEHIND)
    async with channel:
        denied = await stub.UpdateSidecarPolicy(
            sidecar_pb2.UpdateSidecarPolicyRequest(
                policy_id="no-health", service_id=world.services[BEHIND], policy=_deny_health(True)
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await world.health_via_sidecar()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "RBAC" in (refused.value.details() or "")
        allowed = await stub.UpdateSidecarPolicy(
            sidecar_pb2.UpdateSidecarPolicyRequest(
                policy_id="no-health",
                service_id=world.services[BEHIND],
                policy=_deny_health(False),
            )
        )
    assert allowed.config_version == denied.config_version + 1
    assert not allowed.policy.enabled
    assert (await world.health_via_sidecar()).status == health_pb2.HealthCheckResponse.SERVING
    assert (await world.health()).config_version == allowed.config_version


async def test_rate_limit_retry_and_identities_render_into_envoy(world: World) -> None:
    limit = sidecar_pb2.SidecarPolicy(
        policy_id="two-a-minute",
        type=sidecar_pb2.SIDECAR_POLICY_TYPE_RATE_LIMIT,
        enabled=True,
        rate_limit=policy_pb2.RateLimitConfig(requests_per_minute=2, burst=0),
    )
    retry = sidecar_pb2.SidecarPolicy(
        policy_id="retries",
        type=sidecar_pb2.SIDECAR_POLICY_TYPE_RETRY,
        enabled=True,
        retry=policy_pb2.RetryPolicy(
            max_attempts=3, initial_delay_ms=50, retry_on=[policy_pb2.RETRY_ON_CONNECT_FAILURE]
        ),
    )
    channel, stub = world.stub(BEHIND)
    async with channel:
        configured = await stub.ConfigureSidecar(
            sidecar_pb2.ConfigureSidecarRequest(
                service_id=world.services[BEHIND],
                policies=[limit, retry],
                security=sidecar_pb2.SidecarSecurity(
                    allowed_spiffe_ids=["spiffe://lucid.local/ops/operator"]
                ),
            )
        )
        assert (await world.health()).config_version == configured.config.config_version
        codes = []
        for _ in range(4):
            try:
                await world.health_via_sidecar()
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
        assert codes[:2] == [grpc.StatusCode.OK, grpc.StatusCode.OK]
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes[2:]
        # the whole configuration is replaced: without the policy, calls flow again
        await stub.ConfigureSidecar(
            sidecar_pb2.ConfigureSidecarRequest(service_id=world.services[BEHIND])
        )
    assert (await world.health_via_sidecar()).status == health_pb2.HealthCheckResponse.SERVING


async def _refused(
    world: World, identity: str, request: object, rpc: str = "ConfigureSidecar"
) -> grpc.aio.AioRpcError:
    channel, stub = world.stub(identity)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(stub, rpc)(request)
    return caught.value


async def test_bad_changes_are_refused_and_change_nothing(world: World) -> None:
    before = (await world.health()).config_version
    service_id = world.services[BEHIND]
    retry_without_settings = sidecar_pb2.SidecarPolicy(
        policy_id="retries", type=sidecar_pb2.SIDECAR_POLICY_TYPE_RETRY, enabled=True
    )
    cases = [
        # another cluster's sidecar
        (
            "sessions",
            sidecar_pb2.ConfigureSidecarRequest(service_id=service_id),
            "ConfigureSidecar",
            grpc.StatusCode.PERMISSION_DENIED,
            "LUCID_ERR_2004",
        ),
        # an unknown service
        (
            BEHIND,
            sidecar_pb2.ConfigureSidecarRequest(service_id=str(uuid.uuid4())),
            "ConfigureSidecar",
            grpc.StatusCode.NOT_FOUND,
            "LUCID_ERR_4001",
        ),
        # the same policy twice
        (
            BEHIND,
            sidecar_pb2.ConfigureSidecarRequest(
                service_id=service_id, policies=[_deny_health(True), _deny_health(False)]
            ),
            "ConfigureSidecar",
            grpc.StatusCode.INVALID_ARGUMENT,
            "LUCID_ERR_1001",
        ),
        # a RETRY policy without its settings
        (
            BEHIND,
            sidecar_pb2.UpdateSidecarPolicyRequest(
                policy_id="retries", service_id=service_id, policy=retry_without_settings
            ),
            "UpdateSidecarPolicy",
            grpc.StatusCode.INVALID_ARGUMENT,
            "LUCID_ERR_1001",
        ),
        # the path's policy id differs from the body's
        (
            BEHIND,
            sidecar_pb2.UpdateSidecarPolicyRequest(
                policy_id="other-id", service_id=service_id, policy=_deny_health(True)
            ),
            "UpdateSidecarPolicy",
            grpc.StatusCode.INVALID_ARGUMENT,
            None,
        ),
        # not a uuid
        (
            BEHIND,
            sidecar_pb2.ConfigureSidecarRequest(service_id="nodes"),
            "ConfigureSidecar",
            grpc.StatusCode.INVALID_ARGUMENT,
            None,
        ),
        # a cluster running without a sidecar
        (
            WITHOUT,
            sidecar_pb2.ConfigureSidecarRequest(service_id=world.services[WITHOUT]),
            "ConfigureSidecar",
            grpc.StatusCode.FAILED_PRECONDITION,
            "LUCID_ERR_4007",
        ),
        # a sidecar that does not answer: not applied, not stored
        (
            STOPPED,
            sidecar_pb2.ConfigureSidecarRequest(service_id=world.services[STOPPED]),
            "ConfigureSidecar",
            grpc.StatusCode.UNAVAILABLE,
            "LUCID_ERR_5008",
        ),
    ]
    for identity, request, rpc, code, reason in cases:
        error = await _refused(world, identity, request, rpc)
        assert error.code() == code, (request, error.details())
        if reason:
            assert details(error).reason == reason, (request, error.details())
    assert (await world.health()).config_version == before
    # the stopped sidecar's listener file is back to configuration version 0
    lds = world.settings.var_dir / "envoy" / f"sidecar-{STOPPED}.lds.json"
    assert json.loads(await asyncio.to_thread(lds.read_text))["version_info"].endswith(".0")


async def test_an_unreachable_sidecar_is_unavailable(world: World) -> None:
    error = await _refused(
        world,
        STOPPED,
        sidecar_pb2.GetSidecarHealthRequest(service_id=world.services[STOPPED]),
        "GetSidecarHealth",
    )
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert details(error).reason == "LUCID_ERR_5008"


def test_a_run_without_sidecars_forgets_their_sites(settings: Settings, tmp_path: Path) -> None:
    own = settings.replace(var_dir=tmp_path, ports={**settings.ports, BEHIND: free_port()})
    layout = SidecarLayout.allocate(own, clusters=(BEHIND,))
    layout.write(own, BEHIND, tmp_path / "envoy")
    assert (tmp_path / "envoy" / f"sidecar-{BEHIND}.site.json").is_file()
    forget_sidecars(tmp_path / "envoy")
    assert not list((tmp_path / "envoy").glob("*.site.json"))
    assert (tmp_path / "envoy" / f"sidecar-{BEHIND}.json").is_file()  # the bootstrap stays
