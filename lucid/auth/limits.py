"""Applying the rate limits of spec 09 §5: RESOURCE_EXHAUSTED with a RetryInfo."""

from __future__ import annotations

import math

from lucid.auth.policy import RateLimit
from lucid.auth.store.cache import RateLimiter
from lucid.lib.clock import Clock
from lucid.runtime.errors import ErrorCode, LucidError


class Limits:
    """Counts calls per subject and refuses those over a limit."""

    def __init__(self, limiter: RateLimiter, clock: Clock) -> None:
        self._limiter = limiter
        self._clock = clock

    async def enforce(self, rule: RateLimit, subject: str) -> None:
        """Counts one call of ``subject``; raises ``LUCID_ERR_3001`` past the limit."""
        wait = await self._limiter.hit(
            rule.name,
            subject,
            limit=rule.limit,
            window_s=rule.window_s,
            now=self._clock.timestamp(),
        )
        if wait:
            raise LucidError(
                ErrorCode.ERROR_CODE_RATE_LIMITED,
                f"too many {rule.name} requests: at most {rule.limit} per {rule.window_s} s",
                metadata={"limit": str(rule.limit), "window_s": str(rule.window_s)},
                retry_after_s=float(math.ceil(wait)),
            )
