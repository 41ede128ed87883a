"""The upload bandwidth a client may use per session (spec 01 §9: 10,485,760 B/s per
session, counted in bytes, no burst).

The edge counts requests; only the sessions cluster knows how many bytes a chunk
carries, so the bytes are counted here — exactly, before the chunk is stored — for
uploads a client sends through the edge. The recorder's own uploads (a service on the
mesh) are not counted.
"""

from __future__ import annotations

import math

from lucid.lib.ratelimit import TIERS
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.identity import EDGE
from lucid.runtime.limits import RateLimiter
from lucid.sessions.service import Caller

TIER = "chunk_upload_bandwidth"


class UploadBandwidth:
    """Counts the bytes clients upload per session in Redis (GCRA)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def admit(self, caller: Caller, session_id: str, size: int) -> None:
        """Counts ``size`` bytes of a client's upload; raises 3004 when over 10 MiB/s."""
        if caller.service != EDGE:
            return
        policy = TIERS[TIER]
        outcome = await self.limiter.check(TIER, session_id, policy, size)
        if not outcome.decision.allowed:
            raise LucidError(
                ErrorCode.ERROR_CODE_BANDWIDTH_EXCEEDED,
                f"the session's upload bandwidth of {policy.limit} bytes/s is used up",
                metadata={"tier": TIER, "limit": str(policy.limit)},
                retry_after_s=max(1, math.ceil(outcome.decision.retry_after_s)),
            )
