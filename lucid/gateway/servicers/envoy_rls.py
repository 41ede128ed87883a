"""``envoy.service.ratelimit.v3.RateLimitService`` for production Envoy: its descriptors
translated to the gateway's tiers (the same counting as ``RateLimitService``)."""

from __future__ import annotations

import math

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from lucid.common.v1 import access_pb2
from lucid.gateway.tiers import POLICIES, Tiers, tier_by_name, tier_name
from lucid.gateway.v1 import gateway_pb2
from lucid.lib.clock import Clock
from lucid.lib.ratelimit import Policy
from lucid.runtime.contracts import MethodInfo
from lucid.runtime.limits import Outcome
from lucid.runtime.wire import duration

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


def _is_admin(role: str) -> bool:
    """Whether a token's ``role`` claim is an admin's (the admin tier is theirs alone)."""
    try:
        return access_pb2.Role.Value(f"ROLE_{role.upper()}") >= access_pb2.ROLE_ADMIN
    except ValueError:
        return False


class EnvoyRateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):
    """``envoy.service.ratelimit.v3.RateLimitService`` for production Envoy.

    Each descriptor names a tier and whom to count: entries ``tier`` (``public``,
    ``authenticated``, ``admin``, ``blockchain_query``, ``chunk_upload_bandwidth``) and
    ``identifier`` (and ``role``, the token's claim: ``admin`` counts only admins, others
    in ``authenticated``); Envoy's own ``remote_address`` entry counts a caller by IP in
    the public tier when no tier is given. A descriptor that names no tier is not limited.
    """

    def __init__(self, tiers: Tiers, clock: Clock) -> None:
        self.tiers = tiers
        self.clock = clock

    async def _status(
        self, descriptor: object, hits: int
    ) -> tuple[rls_pb2.RateLimitResponse.DescriptorStatus, Outcome | None, Policy | None]:
        entries = {e.key: e.value for e in descriptor.entries}  # type: ignore[attr-defined]
        tier = tier_by_name(entries["tier"]) if "tier" in entries else None
        if tier is None and "remote_address" in entries:
            tier = gateway_pb2.RATE_LIMIT_TIER_PUBLIC
        if tier == gateway_pb2.RATE_LIMIT_TIER_ADMIN and not _is_admin(entries.get("role", "")):
            tier = gateway_pb2.RATE_LIMIT_TIER_AUTHENTICATED  # admin rpcs, but not an admin
        identifier = (
            entries.get("identifier") or entries.get("user_id") or entries.get("remote_address")
        )
        if tier is None or not identifier:
            return rls_pb2.RateLimitResponse.DescriptorStatus(code=Code.OK), None, None
        policy = POLICIES[tier]
        if descriptor.HasField("hits_addend"):  # type: ignore[attr-defined]
            hits = descriptor.hits_addend.value  # type: ignore[attr-defined]
        outcome = await self.tiers.count(tier, identifier[:128], hits)
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
