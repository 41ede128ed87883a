"""Routing and limits of spec 07 §4: the V0 and KYC routers and the breaker's caps.

The router is KYC when the caller asks for it or when a kyc_hash and a node id are
given; KYC needs both (the KYC records service is not built yet, so a KYC payout
is refused unless a verified record exists). Usage is summed from the stored
payouts that are still live, per UTC hour and day, so it survives restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lucid.lib.clock import Clock
from lucid.payments.store.payouts import PayoutStore
from lucid.runtime.errors import ErrorCode, LucidError

USDT = 1_000_000
V0 = "v0"
KYC = "kyc"


@dataclass
class PayoutLimits:
    """The limits in force (micro-USDT)."""

    hourly: int = 1_000 * USDT
    daily: int = 10_000 * USDT
    max_concurrent: int = 10
    v0_max: int = 1_000 * USDT
    v0_daily: int = 10_000 * USDT
    kyc_max: int = 5_000 * USDT
    kyc_daily: int = 50_000 * USDT


def window_starts(now: datetime) -> tuple[float, float]:
    """The start of the current UTC hour and day (epoch seconds)."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    return hour.timestamp(), day.timestamp()


def next_resets(now: datetime) -> tuple[datetime, datetime]:
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return hour + timedelta(hours=1), hour.replace(hour=0) + timedelta(days=1)


def _quota(message: str, limit: str) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_QUOTA_EXCEEDED, message, metadata={"limit": limit})


class LimitCheck:
    """Whether new payouts fit the limits."""

    def __init__(self, store: PayoutStore, clock: Clock, limits: PayoutLimits) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits

    async def usage(self) -> tuple[int, int]:
        """Used this hour and today, all routers."""
        hour, day = window_starts(self.clock.now())
        return await self.store.amount_since(hour), await self.store.amount_since(day)

    async def check(self, amounts: dict[str, int], largest: dict[str, int]) -> None:
        """Raises if payouts of these per-router totals (and largest items) do not fit."""
        limits = self.limits
        for router, biggest in largest.items():
            cap = limits.kyc_max if router == KYC else limits.v0_max
            if biggest > cap:
                raise _quota(f"a {router} payout is at most {cap // USDT} USDT", f"{router}_max")
        hour, day = window_starts(self.clock.now())
        total = sum(amounts.values())
        if await self.store.amount_since(hour) + total > limits.hourly:
            raise _quota(f"payouts are capped at {limits.hourly // USDT} USDT per hour", "hourly")
        if await self.store.amount_since(day) + total > limits.daily:
            raise _quota(f"payouts are capped at {limits.daily // USDT} USDT per day", "daily")
        for router, amount in amounts.items():
            cap = limits.kyc_daily if router == KYC else limits.v0_daily
            if await self.store.amount_since(day, router) + amount > cap:
                raise _quota(f"{router} payouts are capped at {cap // USDT} per day", router)
