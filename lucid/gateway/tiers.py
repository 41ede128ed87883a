"""The rate-limit tiers of spec 01 §9 by the contract's enum, their names (Redis keys,
Envoy descriptors), and ``Tiers``, the counting the limit rpcs ask for. The numbers
live once, in ``lucid.lib.ratelimit.TIERS``; the counting in ``lucid.runtime.limits``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lucid.gateway.v1 import gateway_pb2
from lucid.lib.ratelimit import TIERS, Policy
from lucid.runtime.limits import Count, Outcome, RateLimiter

Tier = gateway_pb2.RateLimitTier

POLICIES: Mapping[int, Policy] = {
    value.number: TIERS[value.name.removeprefix("RATE_LIMIT_TIER_").lower()]
    for value in Tier.DESCRIPTOR.values
    if value.number
}
"""The policies of ``lucid.lib.ratelimit.TIERS`` by the contract's tier enum."""


def tier_name(tier: int) -> str:
    """``RATE_LIMIT_TIER_PUBLIC`` → ``public`` (Redis keys, Envoy descriptors)."""
    return Tier.Name(tier).removeprefix("RATE_LIMIT_TIER_").lower()  # type: ignore[arg-type]


def tier_by_name(name: str) -> int | None:
    """``public`` → ``RATE_LIMIT_TIER_PUBLIC``; ``None`` for an unknown name."""
    try:
        value = Tier.Value(f"RATE_LIMIT_TIER_{name.upper()}")
    except ValueError:
        return None
    return value if value in POLICIES else None


@dataclass(frozen=True)
class TierStatus:
    """How much of a tier one identifier has used."""

    tier: int
    policy: Policy
    outcome: Outcome
    used: int
    burst_used: int


class Tiers:
    """Counts requests against the tiers' policies."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def check(self, tier: int, identifier: str, cost: int) -> Outcome:
        """Counts ``cost`` units (at least one) for ``identifier`` in ``tier``."""
        return await self.limiter.check(tier_name(tier), identifier, POLICIES[tier], max(1, cost))

    async def count(self, tier: int, identifier: str, hits: int) -> Outcome:
        """Counts ``hits`` units as given (Envoy's descriptors; 0 only looks)."""
        return await self.limiter.check(tier_name(tier), identifier, POLICIES[tier], hits)

    async def count_many(self, counts: Sequence[tuple[int, str, int]]) -> list[Outcome]:
        """Counts each ``(tier, identifier, hits)`` as given, in one Redis round trip."""
        return await self.limiter.check_many(
            [Count(tier_name(t), identifier, POLICIES[t], hits) for t, identifier, hits in counts]
        )

    async def status(self, tier: int, identifier: str) -> TierStatus:
        """What ``identifier`` has used of ``tier`` (counting nothing)."""
        policy = POLICIES[tier]
        outcome = await self.limiter.check(tier_name(tier), identifier, policy, 0)
        used = max(0, policy.limit + policy.burst - outcome.decision.remaining)
        return TierStatus(
            tier, policy, outcome, min(used, policy.limit), max(0, used - policy.limit)
        )
