"""Call rate limits of the rdp cluster (spec 04 §5): per user and rpc group, per
minute — servers 100, xrdp 50, RDP sessions 200, resources 300. The call past the
limit within a minute is refused with RESOURCE_EXHAUSTED ``LUCID_ERR_3001`` and a
retry time. They count in the mesh's one limiter (``lucid.runtime.limits``, GCRA in
Redis). Services acting on their own are not limited.
"""

from __future__ import annotations

from lucid.lib.ratelimit import Policy
from lucid.rdp.actor import Actor
from lucid.runtime.context import current_principal
from lucid.runtime.limits import Limit, RateLimiter

WINDOW_S = 60.0
LIMITS = {
    group: Limit(f"rdp_{group}", Policy(limit=per_minute, window_s=WINDOW_S))
    for group, per_minute in (("servers", 100), ("xrdp", 50), ("sessions", 200), ("resources", 300))
}


class CallLimits:
    """Counts the calls of the current caller."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def actor(self, group: str) -> Actor:
        """The caller of the rpc being served, once its call is counted in ``group``."""
        actor = Actor.of(current_principal())
        if actor.user_id:
            await self.limiter.enforce(LIMITS[group], actor.user_id)
        return actor
