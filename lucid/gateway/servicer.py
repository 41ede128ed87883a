"""The gateway's rpcs: meta (info, version, health, metrics), traffic reports from the
edge, the rate limiter, and Envoy's rate-limit service protocol on the same limiter."""

from __future__ import annotations

import math
import time

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from lucid.common.v1 import access_pb2
from lucid.gateway.health import HealthAggregator, Probe
from lucid.gateway.tiers import POLICIES, tier_by_name, tier_name
from lucid.gateway.traffic import RouteStats, Sample, TrafficLog
from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from lucid.lib.clock import Clock
from lucid.lib.ratelimit import Policy
from lucid.runtime.config import Settings
from lucid.runtime.contracts import MethodInfo, protoset_path
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.limits import Outcome, RateLimiter
from lucid.runtime.server import VERSION, Runtime
from lucid.runtime.wire import duration, epoch_seconds, timestamp

SERVICE_NAME = "api-gateway"
API_VERSION = "v1"
FEATURES = ("rest", "grpc-web", "sessions", "chain", "payments", "rdp", "nodes", "admin")
DEFAULT_WINDOW_S = 60


class GatewayService(gateway_pb2_grpc.GatewayServiceServicer):
    """Meta of the API and the traffic the edge saw."""

    def __init__(
        self,
        runtime: Runtime,
        limiter: RateLimiter,
        traffic: TrafficLog,
        health: HealthAggregator,
    ) -> None:
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.clock: Clock = runtime.clock
        self.limiter = limiter
        self.traffic = traffic
        self.health = health
        self.started = time.monotonic()
        try:
            self.build_time = protoset_path().stat().st_mtime
        except FileNotFoundError:
            self.build_time = time.time()

    async def GetServiceInfo(
        self, request: gateway_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetServiceInfoResponse:
        return gateway_pb2.GetServiceInfoResponse(
            service_name=SERVICE_NAME,
            version=VERSION,
            build_time=timestamp(self.build_time),
            environment=self.settings.environment,
            features=FEATURES,
        )

    async def GetVersion(
        self, request: gateway_pb2.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetVersionResponse:
        return gateway_pb2.GetVersionResponse(
            api_version=API_VERSION, supported_versions=[API_VERSION], version=VERSION
        )

    async def GetHealth(
        self, request: gateway_pb2.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetHealthResponse:
        """The mesh's aggregated health (``health``): unhealthy answers UNAVAILABLE naming
        the required dependencies that are down (MongoDB, or finality)."""
        started = time.perf_counter()
        report = await self.health.report()
        down = report.down
        if down:
            names = ", ".join(p.name for p in down)
            raise LucidError(
                ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE
                if any(p.name == "mongodb" for p in down)
                else ErrorCode.ERROR_CODE_DEPENDENCY_UNAVAILABLE,
                f"{SERVICE_NAME} is unhealthy: {names} down",
                metadata={"dependencies": names},
            )
        return gateway_pb2.GetHealthResponse(
            status=report.status,  # type: ignore[arg-type]
            service=SERVICE_NAME,
            version=VERSION,
            check_time=timestamp(report.checked_at),
            dependencies=[_dependency(p) for p in report.probes],
            uptime=duration(time.monotonic() - self.started),
            response_time_ms=round((time.perf_counter() - started) * 1000),
        )

    async def GetMetrics(
        self, request: gateway_pb2.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetMetricsResponse:
        window = request.window_seconds or DEFAULT_WINDOW_S
        now = self.clock.timestamp()
        total, routes = self.traffic.window(now, window, request.route_prefix)
        active = self.traffic.active_connections
        return gateway_pb2.GetMetricsResponse(
            window=duration(window),
            sample_time=timestamp(now),
            total=_route_metrics(total, active),
            routes=[_route_metrics(r, 0) for r in routes],
            active_connections=active,
        )

    async def ReportTraffic(
        self, request: gateway_pb2.ReportTrafficRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ReportTrafficResponse:
        for sample in request.samples:
            finished = epoch_seconds(sample.finish_time) or self.clock.timestamp()
            self.traffic.add(
                sample.method,
                sample.route,
                Sample(finished, sample.http_status, sample.latency_ms),
            )
        self.traffic.active[request.edge_id or "edge"] = request.active_connections
        self.traffic.prune(self.clock.timestamp())
        return gateway_pb2.ReportTrafficResponse(accepted=len(request.samples))


def _dependency(probe: Probe) -> gateway_pb2.DependencyHealth:
    return gateway_pb2.DependencyHealth(
        name=probe.name,
        status=probe.status,  # type: ignore[arg-type]
        required=probe.required,
        response_time_ms=probe.response_time_ms,
        message=probe.message,
        check_time=timestamp(probe.checked_at),
    )


def _route_metrics(stats: RouteStats, active: int) -> gateway_pb2.RouteMetrics:
    return gateway_pb2.RouteMetrics(
        method=stats.method,
        route=stats.route,
        request_count=stats.count,
        request_rate=stats.rate,
        latency_p50_ms=stats.p50_ms,
        latency_p95_ms=stats.p95_ms,
        latency_p99_ms=stats.p99_ms,
        error_rate=stats.error_rate,
        client_error_count=stats.client_errors,
        server_error_count=stats.server_errors,
        active_connections=active,
    )


def _policy_message(tier: int, policy: Policy) -> gateway_pb2.RateLimitPolicy:
    return gateway_pb2.RateLimitPolicy(
        tier=tier,  # type: ignore[arg-type]
        limit=policy.limit,
        burst=policy.burst,
        window=duration(policy.window_s),
    )


class RateLimitService(gateway_pb2_grpc.RateLimitServiceServicer):
    """The tiers of spec 01 §9 on the shared limiter."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def CheckRateLimit(
        self, request: gateway_pb2.CheckRateLimitRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.CheckRateLimitResponse:
        policy = POLICIES[request.tier]
        cost = max(1, request.cost)
        outcome = await self.limiter.check(
            tier_name(request.tier), request.identifier, policy, cost
        )
        decision = outcome.decision
        return gateway_pb2.CheckRateLimitResponse(
            allowed=decision.allowed,
            limit=decision.limit,
            remaining=decision.remaining,
            reset_time=timestamp(decision.reset_at),
            retry_after_seconds=0 if decision.allowed else math.ceil(decision.retry_after_s),
            burst=decision.burst,
            local_fallback=outcome.local_fallback,
        )

    async def GetRateLimitStatus(
        self, request: gateway_pb2.GetRateLimitStatusRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetRateLimitStatusResponse:
        tiers = [request.tier] if request.tier else list(POLICIES)
        statuses = []
        for tier in tiers:
            policy = POLICIES[tier]
            outcome = await self.limiter.check(tier_name(tier), request.identifier, policy, 0)
            used = max(0, policy.limit + policy.burst - outcome.decision.remaining)
            statuses.append(
                gateway_pb2.RateLimitStatus(
                    policy=_policy_message(tier, policy),
                    used=min(used, policy.limit),
                    burst_used=max(0, used - policy.limit),
                    remaining=outcome.decision.remaining,
                    reset_time=timestamp(outcome.decision.reset_at),
                )
            )
        return gateway_pb2.GetRateLimitStatusResponse(
            identifier=request.identifier, statuses=statuses
        )


ENVOY_SHOULD_RATE_LIMIT = MethodInfo(
    service="envoy.service.ratelimit.v3.RateLimitService",
    name="ShouldRateLimit",
    cluster="gateway",
    file="envoy/service/ratelimit/v3/rls.proto",
    input_type="envoy.service.ratelimit.v3.RateLimitRequest",
    output_type="envoy.service.ratelimit.v3.RateLimitResponse",
    client_streaming=False,
    server_streaming=False,
    access=access_pb2.AccessRule(
        service_callers=[access_pb2.CLUSTER_EDGE],
        service_only=True,
        kind=access_pb2.OPERATION_KIND_WRITE,
    ),
    idempotent=False,
    routes=(),
    comment="Envoy's rate-limit service protocol, answered by the gateway's limiter.",
)
"""The access rule of the foreign rpc: only the edge identity (Envoy at the front door)."""

Code = rls_pb2.RateLimitResponse.Code
Unit = rls_pb2.RateLimitResponse.RateLimit.Unit


def _unit(window_s: float) -> int:
    return {1.0: Unit.SECOND, 60.0: Unit.MINUTE, 3600.0: Unit.HOUR, 86400.0: Unit.DAY}.get(
        window_s, Unit.UNKNOWN
    )


class EnvoyRateLimitService(rls_pb2_grpc.RateLimitServiceServicer):
    """``envoy.service.ratelimit.v3.RateLimitService`` for production Envoy.

    Each descriptor names a tier and whom to count: entries ``tier`` (``public``,
    ``authenticated``, ``admin``, ``blockchain_query``, ``chunk_upload_bandwidth``) and
    ``identifier``; Envoy's own ``remote_address`` entry counts a caller by IP in the
    public tier when no tier is given. A descriptor that names no tier is not limited.
    """

    def __init__(self, limiter: RateLimiter, clock: Clock) -> None:
        self.limiter = limiter
        self.clock = clock

    async def _status(
        self, descriptor: object, hits: int
    ) -> tuple[rls_pb2.RateLimitResponse.DescriptorStatus, Outcome | None, Policy | None]:
        entries = {e.key: e.value for e in descriptor.entries}  # type: ignore[attr-defined]
        tier = tier_by_name(entries["tier"]) if "tier" in entries else None
        if tier is None and "remote_address" in entries:
            tier = gateway_pb2.RATE_LIMIT_TIER_PUBLIC
        identifier = (
            entries.get("identifier") or entries.get("user_id") or entries.get("remote_address")
        )
        if tier is None or not identifier:
            return rls_pb2.RateLimitResponse.DescriptorStatus(code=Code.OK), None, None
        policy = POLICIES[tier]
        if descriptor.HasField("hits_addend"):  # type: ignore[attr-defined]
            hits = descriptor.hits_addend.value  # type: ignore[attr-defined]
        outcome = await self.limiter.check(tier_name(tier), identifier[:128], policy, hits)
        decision = outcome.decision
        status = rls_pb2.RateLimitResponse.DescriptorStatus(
            code=Code.OK if decision.allowed else Code.OVER_LIMIT,
            current_limit=rls_pb2.RateLimitResponse.RateLimit(
                name=tier_name(tier),
                requests_per_unit=min(policy.limit, 2**32 - 1),
                unit=_unit(policy.window_s),  # type: ignore[arg-type]
            ),
            limit_remaining=min(decision.remaining, 2**32 - 1),
            duration_until_reset=duration(max(0.0, decision.reset_at - self.clock.timestamp())),
        )
        return status, outcome, policy

    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> rls_pb2.RateLimitResponse:
        hits = request.hits_addend or 1
        results = [await self._status(d, hits) for d in request.descriptors]
        over = [o for _, o, _ in results if o is not None and not o.decision.allowed]
        response = rls_pb2.RateLimitResponse(
            overall_code=Code.OVER_LIMIT if over else Code.OK,
            statuses=[s for s, _, _ in results],
        )
        limited = [(o, p) for _, o, p in results if o is not None and p is not None]
        if limited:
            outcome = min(limited, key=lambda pair: pair[0].decision.remaining)[0]
            decision = outcome.decision
            headers = {
                "x-ratelimit-limit": str(decision.limit),
                "x-ratelimit-remaining": str(decision.remaining),
                "x-ratelimit-reset": str(math.ceil(decision.reset_at)),
            }
            if over:
                wait = max(o.decision.retry_after_s for o in over)
                headers["retry-after"] = str(max(1, math.ceil(wait)))
            response.response_headers_to_add.extend(
                base_pb2.HeaderValue(key=k, value=v) for k, v in headers.items()
            )
        return response
