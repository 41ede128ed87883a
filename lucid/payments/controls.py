"""Operating payouts: limits and their usage, the freeze, retries, statistics, health.

The breaker of spec 07 caps payouts per hour and per UTC day (checked at creation,
``lucid.payments.limits``); here it is reported. A retry puts a failed payout back
to pending while it has been retried fewer than 3 times; it is safe because a
failed payout's last transaction is either mined and failed (it paid nothing) or
expired unseen (it can never pay).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, fields
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from lucid.lib.clock import Clock
from lucid.payments.limits import KYC, V0, LimitCheck, PayoutLimits, next_resets, window_starts
from lucid.payments.network import NetworkError, TronNetwork
from lucid.payments.sender import MAX_RETRIES, PayoutSender
from lucid.payments.store.audit import AuditStore
from lucid.payments.store.base import StoreUnavailableError
from lucid.payments.store.payouts import (
    BROADCAST,
    CONFIRMED,
    FAILED,
    PENDING,
    PROCESSING,
    PayoutRecord,
    PayoutStore,
)
from lucid.payments.wallets import Actor, Wallets
from lucid.runtime.errors import ErrorCode, LucidError

LIMIT_FIELDS = tuple(f.name for f in fields(PayoutLimits))


@dataclass
class BreakerReport:
    """What GetBreakerStatus says."""

    hourly_used: int
    daily_used: int
    hourly_reset: float
    daily_reset: float
    in_flight: int
    frozen: bool
    failures: int
    state: str
    opened_at: float
    retry_after_s: float


@dataclass
class Stats:
    """Payout statistics over a period."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    success_rate: float = 0.0
    confirmed_amount: int = 0
    fees_sun: int = 0
    routers: dict[str, dict[str, int]] = field(default_factory=dict)
    confirmation_p50_s: float = 0.0
    confirmation_p95_s: float = 0.0
    pending: int = 0


@dataclass
class Dependency:
    """One dependency's health."""

    name: str
    healthy: bool
    degraded: bool = False
    response_ms: int = 0
    message: str = ""


class PayoutControls:
    """Admin views and switches of the payout machinery."""

    def __init__(
        self,
        store: PayoutStore,
        limits: LimitCheck,
        sender: PayoutSender,
        network: TronNetwork,
        *,
        wallets: Wallets,
        audit: AuditStore,
        clock: Clock,
        settings: AsyncCollection[dict[str, Any]],
    ) -> None:
        self.store = store
        self.limits = limits
        self.sender = sender
        self.network = network
        self.wallets = wallets
        self.audit = audit
        self.clock = clock
        self.settings = settings

    async def breaker(self) -> BreakerReport:
        hourly, daily = await self.limits.usage()
        hour_reset, day_reset = next_resets(self.clock.now())
        in_flight = len(await self.store.many({"status": {"$in": [PROCESSING, BROADCAST]}}))
        breaker = self.sender.breaker
        state = breaker.state.value
        return BreakerReport(
            hourly, daily, hour_reset.timestamp(), day_reset.timestamp(),
            in_flight, self.sender.frozen, breaker.failures, state,
            breaker.opened_at, breaker.retry_after_s,
        )  # fmt: skip

    async def load_limits(self) -> None:
        """The limits an admin set before a restart (the defaults otherwise)."""
        try:
            doc = await self.settings.find_one({"_id": "limits"})
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        if doc is not None:
            for name in LIMIT_FIELDS:
                if name in doc:
                    setattr(self.limits.limits, name, int(doc[name]))

    async def update_limits(
        self, actor: Actor, changes: dict[str, int], reason: str
    ) -> PayoutLimits:
        """Overrides limits (zero values are left unchanged); kept across restarts."""
        limits = self.limits.limits
        for name, value in changes.items():
            if value:
                setattr(limits, name, value)
        values = {name: getattr(limits, name) for name in LIMIT_FIELDS}
        try:
            await self.settings.update_one({"_id": "limits"}, {"$set": values}, upsert=True)
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        await self.audit.record(
            "limits.updated", actor.display, details={**values, "reason": reason}
        )
        return limits

    async def reset_breaker(self, actor: Actor, reason: str) -> None:
        """Closes the TRON breaker by hand and clears its failure count."""
        self.sender.breaker.reset()
        await self.audit.record("breaker.reset", actor.display, details={"reason": reason})
        self.sender.wake()

    async def set_freeze(self, actor: Actor, frozen: bool, reason: str) -> int:
        """Freezes or releases sending; how many payouts the freeze holds."""
        self.sender.frozen = frozen
        await self.audit.record(
            "payouts.frozen" if frozen else "payouts.released",
            actor.display,
            details={"reason": reason},
        )
        if not frozen:
            self.sender.wake()
        return len(await self.store.many({"status": PENDING})) if frozen else 0

    async def retry(self, actor: Actor, payout_id: str) -> PayoutRecord:
        record = await self.store.get(payout_id)
        if record is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such payout")
        if record.status != FAILED:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"only a failed payout is retried, not {record.status}",
            )
        if record.retry_count >= MAX_RETRIES:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE, f"the payout was retried {MAX_RETRIES} times"
            )
        moved = await self.store.move_if(
            payout_id,
            {"status": FAILED, "retry_count": record.retry_count},
            {
                "status": PENDING,
                "tx": None,
                "retry_count": record.retry_count + 1,
                "error_message": "",
                "update_time": self.clock.timestamp(),
            },
        )
        if moved is None:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "the payout changed meanwhile")
        await self.audit.record("payout.retried", actor.display, payout_id=payout_id)
        self.sender.wake()
        return moved

    async def stats(self, start: float, end: float) -> Stats:
        records = await self.store.many({"create_time": {"$gte": start, "$lt": end}})
        out = Stats(total=len(records))
        delays: list[float] = []
        for router in (V0, KYC):
            out.routers[router] = {"count": 0, "confirmed": 0, "amount": 0}
        for r in records:
            out.by_status[r.status] = out.by_status.get(r.status, 0) + 1
            totals = out.routers.setdefault(r.router, {"count": 0, "confirmed": 0, "amount": 0})
            totals["count"] += 1
            if r.tx is not None:
                out.fees_sun += r.tx.fee_sun
            if r.status == CONFIRMED:
                out.confirmed_amount += r.amount_micros
                totals["confirmed"] += 1
                totals["amount"] += r.amount_micros
                delays.append(r.confirm_time - r.create_time)
        finished = out.by_status.get(CONFIRMED, 0) + out.by_status.get(FAILED, 0)
        out.success_rate = out.by_status.get(CONFIRMED, 0) / finished if finished else 0.0
        if delays:
            out.confirmation_p50_s = statistics.median(delays)
            out.confirmation_p95_s = sorted(delays)[max(0, int(len(delays) * 0.95) - 1)]
        out.pending = len(await self.store.many({"status": PENDING}))
        return out

    async def router_usage(self) -> dict[str, int]:
        _, day = window_starts(self.clock.now())
        return {r: await self.store.amount_since(day, r) for r in (V0, KYC)}

    async def health(self) -> list[Dependency]:
        deps: list[Dependency] = []
        started = time.monotonic()
        try:
            await self.store.many({"status": PENDING}, limit=1)
            deps.append(Dependency("mongodb", True, response_ms=_ms(started)))
        except LucidError:
            deps.append(Dependency("mongodb", False, message="the database is unreachable"))
        started = time.monotonic()
        try:
            await self.network.head_number()
            deps.append(Dependency("tron", True, response_ms=_ms(started)))
            wallet = await self.wallets.payout_wallet()
            usdt = await self.network.usdt_balance(wallet.address)
            trx = await self.network.trx_balance(wallet.address)
            low = usdt < 100 * 1_000_000 or trx < 100 * 1_000_000
            deps.append(
                Dependency(
                    "hot_wallet", usdt > 0 and trx > 0, degraded=low,
                    message="low balance" if low else "",
                )
            )  # fmt: skip
        except NetworkError:
            deps.append(Dependency("tron", False, message="the TRON node is unreachable"))
        frozen = self.sender.frozen
        deps.append(
            Dependency("breaker", True, degraded=frozen, message="frozen" if frozen else "")
        )
        return deps


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def as_dict(stats: Stats) -> dict[str, Any]:
    return stats.__dict__
