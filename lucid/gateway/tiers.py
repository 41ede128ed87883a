"""The rate-limit tiers of spec 01 §9 and how Envoy's descriptors name them.

Burst = twice the limit for the request tiers (refilled over 300 s, spec 01 §4); the
chunk-upload tier is a bandwidth of 10,485,760 B/s per session with no burst.
"""

from __future__ import annotations

from collections.abc import Mapping

from lucid.gateway.v1 import gateway_pb2

from lucid.lib.ratelimit import Policy

Tier = gateway_pb2.RateLimitTier

POLICIES: Mapping[int, Policy] = {
    gateway_pb2.RATE_LIMIT_TIER_PUBLIC: Policy(limit=100, window_s=60.0, burst=200),
    gateway_pb2.RATE_LIMIT_TIER_AUTHENTICATED: Policy(limit=1000, window_s=60.0, burst=2000),
    gateway_pb2.RATE_LIMIT_TIER_ADMIN: Policy(limit=10_000, window_s=60.0, burst=20_000),
    gateway_pb2.RATE_LIMIT_TIER_BLOCKCHAIN_QUERY: Policy(limit=500, window_s=60.0, burst=1000),
    gateway_pb2.RATE_LIMIT_TIER_CHUNK_UPLOAD_BANDWIDTH: Policy(limit=10_485_760, window_s=1.0),
}


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
