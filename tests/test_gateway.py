"""The gateway (cluster 01): meta rpcs, health with per-dependency status, metrics of
what the edge reported, the rate limiter in Redis (and in memory while Redis is down),
and Envoy's rate-limit service protocol on the same limiter."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf import wrappers_pb2

from lucid.common.v1 import access_pb2
from lucid.gateway import app as gateway_app
from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from lucid.lib.clock import FakeClock
from lucid.lib.ratelimit import MemoryLimiter, Policy
from lucid.runtime.config import Settings
from lucid.runtime.datastores import Datastores
from lucid.runtime.limits import RateLimiter
from lucid.runtime.server import ClusterServer, Runtime
from lucid.supervisor.localservers import free_port
from tests.support import Mesh, bearer, details, operator_channel, serve_health_only

PUBLIC = gateway_pb2.RATE_LIMIT_TIER_PUBLIC
BANDWIDTH = gateway_pb2.RATE_LIMIT_TIER_CHUNK_UPLOAD_BANDWIDTH
DEAD = "127.0.0.1:1"


@asynccontextmanager
async def gateway(settings: Settings, clock: FakeClock | None = None) -> AsyncIterator[Settings]:
    """A gateway of its own (own port, optionally other stores and a fake clock), with a
    stand-in for the one chain validator (health only) so that finality is possible."""
    own = settings.replace(
        ports={**settings.ports, "gateway": free_port(), "blockchain": free_port()}
    )
    validator = await serve_health_only(own, "blockchain")
    runtime = Runtime(own, "gateway", clock=clock)
    server = ClusterServer(runtime, await gateway_app.build(runtime), port=own.port("gateway"))
    await server.start()
    try:
        yield own
    finally:
        await server.stop(grace_s=0.2)
        await validator.stop(grace_s=0.1)


def _rate_stub(settings: Settings, identity: str = "edge") -> gateway_pb2_grpc.RateLimitServiceStub:
    return gateway_pb2_grpc.RateLimitServiceStub(operator_channel(settings, "gateway", identity))


async def test_meta_rpcs_are_public(mesh: Mesh) -> None:
    await mesh.start("gateway")
    async with mesh.channel("gateway") as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        info = await stub.GetServiceInfo(gateway_pb2.GetServiceInfoRequest())
        version = await stub.GetVersion(gateway_pb2.GetVersionRequest())
    assert info.service_name == "api-gateway"
    assert info.version and info.environment and "grpc-web" in info.features
    assert version.api_version == "v1" and "v1" in version.supported_versions


async def test_health_is_degraded_without_redis(settings: Settings) -> None:
    own = settings.replace(redis_url=f"redis://{DEAD}/0")
    async with gateway(own) as own, operator_channel(own, "gateway") as channel:
        health = await gateway_pb2_grpc.GatewayServiceStub(channel).GetHealth(
            gateway_pb2.GetHealthRequest()
        )
    assert health.status == gateway_pb2.HEALTH_STATUS_DEGRADED
    redis = next(d for d in health.dependencies if d.name == "redis")
    assert redis.status == gateway_pb2.HEALTH_STATUS_DEGRADED and not redis.required
    assert redis.message


async def test_health_is_unavailable_without_mongodb(settings: Settings) -> None:
    own = settings.replace(mongodb_uri=f"mongodb://{DEAD}/")
    async with gateway(own) as own, operator_channel(own, "gateway") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gateway_pb2_grpc.GatewayServiceStub(channel).GetHealth(
                gateway_pb2.GetHealthRequest()
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = details(caught.value)
    assert info.reason == "LUCID_ERR_5003"
    assert "mongodb" in info.message and info.metadata["dependencies"] == "mongodb"


async def test_check_rate_limit_is_for_the_edge_only(mesh: Mesh) -> None:
    await mesh.start("gateway")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _rate_stub(mesh.settings, "operator").CheckRateLimit(
            gateway_pb2.CheckRateLimitRequest(tier=PUBLIC, identifier="10.0.0.1")
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(caught.value).reason == "LUCID_ERR_2013"


async def test_public_tier_allows_the_limit_plus_the_burst(settings: Settings) -> None:
    clock = FakeClock()
    async with gateway(settings, clock) as own:
        stub = _rate_stub(own)
        ip = f"198.51.100.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:6]}"
        request = gateway_pb2.CheckRateLimitRequest(tier=PUBLIC, identifier=ip, route="GET /x")
        replies = [await stub.CheckRateLimit(request) for _ in range(301)]
        assert all(r.allowed for r in replies[:300])
        assert not any(r.burst for r in replies[:100])
        assert all(r.burst for r in replies[100:300])
        refused = replies[300]
        assert not refused.allowed and refused.limit == 100 and refused.remaining == 0
        assert 1 <= refused.retry_after_seconds <= 60
        assert not refused.local_fallback
        assert replies[0].remaining == 299
        clock.advance(refused.retry_after_seconds)
        assert (await stub.CheckRateLimit(request)).allowed


async def test_bandwidth_tier_counts_bytes_per_second(settings: Settings) -> None:
    clock = FakeClock()
    async with gateway(settings, clock) as own:
        stub = _rate_stub(own)
        session = str(uuid.uuid4())

        async def send(size: int) -> gateway_pb2.CheckRateLimitResponse:
            return await stub.CheckRateLimit(
                gateway_pb2.CheckRateLimitRequest(tier=BANDWIDTH, identifier=session, cost=size)
            )

        assert (await send(10_485_760)).allowed
        refused = await send(1)
        assert not refused.allowed and refused.limit == 10_485_760
        assert refused.retry_after_seconds == 1
        clock.advance(0.5)
        assert (await send(5_000_000)).allowed
        assert not (await send(500_000)).allowed


async def test_limits_stay_in_memory_while_redis_is_down(settings: Settings) -> None:
    # A clock that stands still: on a loaded machine 301 calls take long enough for
    # the bucket to refill one token.
    async with gateway(settings.replace(redis_url=f"redis://{DEAD}/0"), FakeClock()) as own:
        stub = _rate_stub(own)
        request = gateway_pb2.CheckRateLimitRequest(tier=PUBLIC, identifier="203.0.113.9")
        replies = [await stub.CheckRateLimit(request) for _ in range(301)]
    assert all(r.local_fallback for r in replies)
    assert all(r.allowed for r in replies[:300])
    assert not replies[300].allowed


async def test_redis_script_and_memory_limiter_agree(settings: Settings) -> None:
    """The Lua script and ``lucid.lib.ratelimit.decide`` are one algorithm."""
    clock = FakeClock()
    stores = Datastores(settings, mongo=False, redis=True)
    limiter = RateLimiter(stores.cache, clock, "gateway")
    memory = MemoryLimiter()
    policy = Policy(limit=10, window_s=60.0, burst=20, burst_window_s=300.0)
    key = f"agree-{uuid.uuid4().hex}"
    steps = [(1, 0.0)] * 12 + [(5, 1.0), (3, 7.5), (1, 0.0)] * 6 + [(2, 40.0)] * 5 + [(0, 0.0)]
    try:
        for cost, wait in steps:
            clock.advance(wait)
            redis_side = (await limiter.check("test", key, policy, cost)).decision
            memory_side = memory.check(
                f"lucid:gateway:rl:test:{key}", policy, clock.timestamp(), cost
            )
            assert redis_side.allowed == memory_side.allowed
            assert redis_side.burst == memory_side.burst
            assert redis_side.remaining == memory_side.remaining
            assert redis_side.reset_at == pytest.approx(memory_side.reset_at, abs=1e-3)
            assert redis_side.retry_after_s == pytest.approx(memory_side.retry_after_s, abs=1e-3)
    finally:
        await stores.close()


async def test_concurrent_checks_share_round_trips_and_never_over_admit(
    settings: Settings,
) -> None:
    """Checks that arrive together go to Redis together (one script for many keys), and
    each is still decided in arrival order: exactly the limit plus the burst pass."""
    stores = Datastores(settings, mongo=False, redis=True)
    limiter = RateLimiter(stores.cache, FakeClock(), "gateway")
    script = limiter._script
    batches: list[int] = []

    async def counting(*, keys: list[str], args: list[int]) -> object:
        batches.append(len(keys))
        return await script(keys=keys, args=args)

    limiter._script = counting  # type: ignore[assignment]
    policy = Policy(limit=100, window_s=60.0, burst=200, burst_window_s=300.0)
    key = f"together-{uuid.uuid4().hex}"
    try:
        outcomes = await asyncio.gather(
            *(limiter.check("test", key, policy, 1) for _ in range(301))
        )
        other = await limiter.check("test", f"{key}-other", policy, 1)
    finally:
        await stores.close()
    assert [o.decision.allowed for o in outcomes] == [True] * 300 + [False]
    assert [o.decision.remaining for o in outcomes[:3]] == [299, 298, 297]
    assert outcomes[300].decision.retry_after_s > 0
    assert other.decision.allowed and other.decision.remaining == 299  # keys stay apart
    assert sum(batches) == 302
    assert len(batches) <= 4  # 301 checks in a few scripts, not 301 round trips
    assert max(batches) <= 256


async def test_envoy_rate_limit_service_uses_the_same_limiter(settings: Settings) -> None:
    async with gateway(settings, FakeClock()) as own:
        channel = operator_channel(own, "gateway", "edge")
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        user = str(uuid.uuid4())
        descriptor = ratelimit_pb2.RateLimitDescriptor(
            entries=[
                ratelimit_pb2.RateLimitDescriptor.Entry(key="tier", value="blockchain_query"),
                ratelimit_pb2.RateLimitDescriptor.Entry(key="identifier", value=user),
            ]
        )
        unknown = ratelimit_pb2.RateLimitDescriptor(
            entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key="path", value="/x")]
        )
        first = await stub.ShouldRateLimit(
            rls_pb2.RateLimitRequest(domain="lucid", descriptors=[descriptor, unknown])
        )
        assert first.overall_code == rls_pb2.RateLimitResponse.OK
        status = first.statuses[0]
        assert status.current_limit.requests_per_unit == 500
        assert status.current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.MINUTE
        assert status.limit_remaining == 1499
        assert first.statuses[1].code == rls_pb2.RateLimitResponse.OK
        headers = {h.key: h.value for h in first.response_headers_to_add}
        assert headers["x-ratelimit-limit"] == "500"
        assert headers["x-ratelimit-remaining"] == "1499"
        for hits in (499, 1000):  # the rest of the minute's 500, then the burst of 1000
            big = ratelimit_pb2.RateLimitDescriptor()
            big.CopyFrom(descriptor)
            big.hits_addend.CopyFrom(wrappers_pb2.UInt64Value(value=hits))
            reply = await stub.ShouldRateLimit(
                rls_pb2.RateLimitRequest(domain="lucid", descriptors=[big])
            )
            assert reply.overall_code == rls_pb2.RateLimitResponse.OK
        over = await stub.ShouldRateLimit(
            rls_pb2.RateLimitRequest(domain="lucid", descriptors=[descriptor])
        )
        assert over.overall_code == rls_pb2.RateLimitResponse.OVER_LIMIT
        headers = {h.key: h.value for h in over.response_headers_to_add}
        assert int(headers["retry-after"]) >= 1
        # the gateway's own rpc sees the same counter
        mine = await _rate_stub(own).CheckRateLimit(
            gateway_pb2.CheckRateLimitRequest(
                tier=gateway_pb2.RATE_LIMIT_TIER_BLOCKCHAIN_QUERY, identifier=user
            )
        )
        assert not mine.allowed
        # the admin tier (10000/min) is an admin's alone: a user on an admin rpc counts
        # as authenticated (1000/min)
        for role, limit in (("super_admin", 10000), ("user", 1000)):
            reply = await stub.ShouldRateLimit(
                rls_pb2.RateLimitRequest(
                    domain="lucid",
                    descriptors=[
                        ratelimit_pb2.RateLimitDescriptor(
                            entries=[
                                ratelimit_pb2.RateLimitDescriptor.Entry(key="tier", value="admin"),
                                ratelimit_pb2.RateLimitDescriptor.Entry(key="role", value=role),
                                ratelimit_pb2.RateLimitDescriptor.Entry(
                                    key="identifier", value=str(uuid.uuid4())
                                ),
                            ]
                        )
                    ],
                )
            )
            assert reply.statuses[0].current_limit.requests_per_unit == limit, role
        operator = rls_pb2_grpc.RateLimitServiceStub(operator_channel(own, "gateway"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await operator.ShouldRateLimit(rls_pb2.RateLimitRequest(domain="lucid"))
        assert details(caught.value).reason == "LUCID_ERR_2013"
        await channel.close()


async def test_metrics_aggregate_what_the_edge_reported(mesh: Mesh, settings: Settings) -> None:
    async with gateway(settings) as own:
        edge = gateway_pb2_grpc.GatewayServiceStub(operator_channel(own, "gateway", "edge"))
        samples = [
            gateway_pb2.TrafficSample(
                method="GET", route="/api/v1/meta/info", http_status=200, latency_ms=float(i)
            )
            for i in range(1, 101)
        ]
        samples += [
            gateway_pb2.TrafficSample(
                method="POST", route="/api/v1/sessions", http_status=status, latency_ms=5.0
            )
            for status in (201, 400, 503, 200)
        ]
        for sample in samples:
            sample.finish_time.GetCurrentTime()
        reply = await edge.ReportTraffic(
            gateway_pb2.ReportTrafficRequest(samples=samples, active_connections=3, edge_id="e1")
        )
        assert reply.accepted == 104
        admin = await mesh.token(role=access_pb2.ROLE_ADMIN)
        stub = gateway_pb2_grpc.GatewayServiceStub(operator_channel(own, "gateway"))
        metrics = await stub.GetMetrics(
            gateway_pb2.GetMetricsRequest(window_seconds=60), metadata=bearer(admin)
        )
        user = await mesh.token()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetMetrics(gateway_pb2.GetMetricsRequest(), metadata=bearer(user))
    assert details(caught.value).reason == "LUCID_ERR_2004"
    assert metrics.total.request_count == 104
    assert metrics.active_connections == 3
    info = metrics.routes[0]
    assert (info.method, info.route, info.request_count) == ("GET", "/api/v1/meta/info", 100)
    assert (info.latency_p50_ms, info.latency_p95_ms, info.latency_p99_ms) == (50.0, 95.0, 99.0)
    assert info.request_rate == pytest.approx(100 / 60)
    sessions = metrics.routes[1]
    assert sessions.client_error_count == 1 and sessions.server_error_count == 1
    assert sessions.error_rate == pytest.approx(0.5)
