"""Per-caller call limits of the payments cluster (spec 07 §5, v1 rate limits): per user
and rpc group, per minute, with a burst of as many again — network 1000, wallets 500,
usdt 200, payouts 100 (KYC records count here too), staking 50, payments 300. The call
past the limit is refused with RESOURCE_EXHAUSTED ``LUCID_ERR_3001`` and a retry time
before anything is read or stored. They count in the mesh's one limiter
(``lucid.runtime.limits``: GCRA in Redis, in memory while Redis is down). Services
acting on their own (the nodes cluster's payouts, admin's reads) are not limited; the
gateway limits them per IP at the edge.
"""

from __future__ import annotations

from lucid.lib.ratelimit import Policy
from lucid.runtime.context import current_principal
from lucid.runtime.limits import Limit, RateLimiter

WINDOW_S = 60.0
PER_MINUTE = {
    "network": 1000,
    "wallets": 500,
    "usdt": 200,
    "payouts": 100,
    "staking": 50,
    "payments": 300,
}
LIMITS = {
    group: Limit(
        f"payments_{group}",
        Policy(limit=n, window_s=WINDOW_S, burst=n, burst_window_s=WINDOW_S),
    )
    for group, n in PER_MINUTE.items()
}


class CallLimits:
    """Counts the current caller's calls of one rpc group."""

    def __init__(self, limiter: RateLimiter, group: str) -> None:
        self.limiter = limiter
        self.limit = LIMITS[group]

    async def count(self) -> None:
        """Counts the call being served; past the limit raises ``LUCID_ERR_3001``."""
        user = current_principal().user
        if user is not None:
            await self.limiter.enforce(self.limit, user.user_id)
