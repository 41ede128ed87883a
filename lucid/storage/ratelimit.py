"""Per-caller rate limits of storage's rpc groups (spec 08 §5).

Spec 08 gives per-minute limits with bursts: database operations 500 (burst
1000), backups 10 (20), sharding 5 (10). The front door (gateway) limits
requests per user and IP for the whole mesh; these limits are storage's own,
per caller and rpc group, so that an admin token or service cannot run more
than a burst of backups in any minute. Backup changes (create, delete,
restore, schedules) count as "backups"; reading their state counts as a
database operation, so progress polling is not starved. They count in the mesh's
one limiter (``lucid.runtime.limits``, GCRA): a group allows its per-minute rate
plus as much again as a burst refilled over the minute, so the (burst + 1)-th
call within a minute is RESOURCE_EXHAUSTED with RetryInfo.
"""

from __future__ import annotations

from lucid.lib.ratelimit import Policy
from lucid.runtime.context import current_principal
from lucid.runtime.limits import Limit, RateLimiter


def _group(name: str, per_minute: int, burst: int) -> Limit:
    return Limit(
        name,
        Policy(limit=per_minute, window_s=60.0, burst=burst - per_minute, burst_window_s=60.0),
    )


LIMITS = {
    "database": _group("database", 500, 1000),
    "backups": _group("backups", 10, 20),
    "sharding": _group("sharding", 5, 10),
}


class CallerLimits:
    """Counts calls of the current caller per rpc group."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def check(self, group: str) -> None:
        """Counts a call of the current caller; raises RESOURCE_EXHAUSTED over the burst."""
        await self.limiter.enforce(LIMITS[group], current_principal().display)
