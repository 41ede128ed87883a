"""Proto ↔ record mapping of the gateway."""

from __future__ import annotations

from lucid.gateway.health import Probe
from lucid.gateway.tiers import TierStatus
from lucid.gateway.traffic import RouteStats, Sample
from lucid.gateway.v1 import gateway_pb2
from lucid.lib.ratelimit import Policy
from lucid.runtime.wire import duration, epoch_seconds, timestamp


def dependency(probe: Probe) -> gateway_pb2.DependencyHealth:
    """One probed dependency."""
    return gateway_pb2.DependencyHealth(
        name=probe.name,
        status=probe.status,  # type: ignore[arg-type]
        required=probe.required,
        response_time_ms=probe.response_time_ms,
        message=probe.message,
        check_time=timestamp(probe.checked_at),
    )


def route_metrics(stats: RouteStats, active: int) -> gateway_pb2.RouteMetrics:
    """The metrics of one route (or of all)."""
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


def samples(request: gateway_pb2.ReportTrafficRequest, now: float) -> list[tuple[str, str, Sample]]:
    """The samples of an edge's traffic report (unfinished ones count as ``now``)."""
    return [
        (
            s.method,
            s.route,
            Sample(epoch_seconds(s.finish_time) or now, s.http_status, s.latency_ms),
        )
        for s in request.samples
    ]


def policy(tier: int, value: Policy) -> gateway_pb2.RateLimitPolicy:
    """A tier's policy."""
    return gateway_pb2.RateLimitPolicy(
        tier=tier,  # type: ignore[arg-type]
        limit=value.limit,
        burst=value.burst,
        window=duration(value.window_s),
    )


def tier_status(found: TierStatus) -> gateway_pb2.RateLimitStatus:
    """What an identifier has used of a tier."""
    return gateway_pb2.RateLimitStatus(
        policy=policy(found.tier, found.policy),
        used=found.used,
        burst_used=found.burst_used,
        remaining=found.outcome.decision.remaining,
        reset_time=timestamp(found.outcome.decision.reset_at),
    )
