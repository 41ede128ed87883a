"""``envoy.service.ratelimit.v3.RateLimitService`` for production Envoy: its descriptors
translated to the gateway's tiers (the same counting as ``RateLimitService``)."""

from __future__ import annotations

import math

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from lucid.common.v1 import access_pb2
from lucid.gateway.tiers import POLICIES, Tiers, tier_name
from lucid.gateway.v1 import gateway_pb2
from lucid.lib.clock import Clock
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
OK = int(Code.OK)
OVER_LIMIT = int(Code.OVER_LIMIT)
UNITS = {1.0: Unit.SECOND, 60.0: Unit.MINUTE, 3600.0: Unit.HOUR, 86400.0: Unit.DAY}


def _unit(window_s: float) -> int:
    return int(UNITS.get(window_s, Unit.UNKNOWN))


def _current_limit(tier: int) -> rls_pb2.RateLimitResponse.RateLimit:
    policy = POLICIES[tier]
    return rls_pb2.RateLimitResponse.RateLimit(
        name=tier_name(tier),
        requests_per_unit=min(policy.limit, 2**32 - 1),
        unit=_unit(policy.window_s),  # type: ignore[arg-type]
    )


CURRENT_LIMITS = {tier: _current_limit(tier) for tier in POLICIES}
"""Each tier's limit as Envoy reads it, built once (it is in every answer)."""
TIERS_BY_NAME = {tier_name(tier): tier for tier in POLICIES}
PUBLIC = int(gateway_pb2.RATE_LIMIT_TIER_PUBLIC)
AUTHENTICATED = int(gateway_pb2.RATE_LIMIT_TIER_AUTHENTICATED)
ADMIN = int(gateway_pb2.RATE_LIMIT_TIER_ADMIN)


ADMIN_ROLES = frozenset(
    name.removeprefix("ROLE_").lower()
    for name, number in access_pb2.Role.items()
    if number >= access_pb2.ROLE_ADMIN
)
"""The ``role`` claims of admins (the admin tier is theirs alone)."""


def _is_admin(role: str) -> bool:
    """Whether a token's ``role`` claim is an admin's."""
    return role.lower() in ADMIN_ROLES


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

    def _counted(self, descriptor: object, hits: int) -> tuple[int, str, int] | None:
        """The tier, identifier and hits a descriptor counts (``None``: not limited)."""
        entries = {e.key: e.value for e in descriptor.entries}  # type: ignore[attr-defined]
        tier = TIERS_BY_NAME.get(entries["tier"].lower()) if "tier" in entries else None
        if tier is None and "remote_address" in entries:
            tier = PUBLIC
        if tier == ADMIN and not _is_admin(entries.get("role", "")):
            tier = AUTHENTICATED  # admin rpcs, but not an admin
        identifier = (
            entries.get("identifier") or entries.get("user_id") or entries.get("remote_address")
        )
        if tier is None or not identifier:
            return None
        if descriptor.HasField("hits_addend"):  # type: ignore[attr-defined]
            hits = descriptor.hits_addend.value  # type: ignore[attr-defined]
        return tier, identifier[:128], hits

    def _status(
        self, tier: int, outcome: Outcome, now: float
    ) -> rls_pb2.RateLimitResponse.DescriptorStatus:
        decision = outcome.decision
        return rls_pb2.RateLimitResponse.DescriptorStatus(
            code=OK if decision.allowed else OVER_LIMIT,  # type: ignore[arg-type]
            current_limit=CURRENT_LIMITS[tier],
            limit_remaining=min(decision.remaining, 2**32 - 1),
            duration_until_reset=duration(max(0.0, decision.reset_at - now)),
        )

    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> rls_pb2.RateLimitResponse:
        hits = request.hits_addend or 1
        counted = [self._counted(d, hits) for d in request.descriptors]
        limited = [c for c in counted if c is not None]
        outcomes = iter(await self.tiers.count_many(limited))  # one Redis round trip
        now = self.clock.timestamp()
        response = rls_pb2.RateLimitResponse(overall_code=OK)  # type: ignore[arg-type]
        found: list[Outcome] = []
        for count in counted:
            if count is None:
                response.statuses.add(code=OK)
                continue
            outcome = next(outcomes)
            found.append(outcome)
            response.statuses.append(self._status(count[0], outcome, now))
        if not found:
            return response
        over = [o for o in found if not o.decision.allowed]
        if over:
            response.overall_code = OVER_LIMIT  # type: ignore[assignment]
        decision = min(found, key=lambda o: o.decision.remaining).decision
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
