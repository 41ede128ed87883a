"""The rate-limit tiers of spec 01 §9 by the contract's enum, and their names (Redis
keys, Envoy descriptors). The numbers live once, in ``lucid.lib.ratelimit.TIERS``."""

from __future__ import annotations

from collections.abc import Mapping

from lucid.gateway.v1 import gateway_pb2

from lucid.lib.ratelimit import TIERS, Policy

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
