"""``lucid.gateway.v1.RateLimitService``: the tiers of spec 01 §9, as the edge asks."""

from __future__ import annotations

import math

import grpc

from lucid.gateway import convert
from lucid.gateway.tiers import POLICIES, Tiers
from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from lucid.runtime.wire import timestamp


class RateLimitServicer(gateway_pb2_grpc.RateLimitServiceServicer):
    """Translates the limit rpcs to the tiers."""

    def __init__(self, tiers: Tiers) -> None:
        self.tiers = tiers

    async def CheckRateLimit(
        self, request: gateway_pb2.CheckRateLimitRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.CheckRateLimitResponse:
        outcome = await self.tiers.check(request.tier, request.identifier, request.cost)
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
        return gateway_pb2.GetRateLimitStatusResponse(
            identifier=request.identifier,
            statuses=[
                convert.tier_status(await self.tiers.status(t, request.identifier)) for t in tiers
            ],
        )
