"""What nodes are paid (spec 05 §4 payouts, §5 limits): batches handed to cluster 07.

BatchPayouts checks every item (amount 0.000001-1,000,000 USDT in whole cents, as
cluster 07 pays them; a TRON address with a valid checksum and none of the
patterns ``00000000``, ``ffffffff``, ``12345678``; an existing node), stores the
batch and its payouts PENDING and answers at once (202 semantics: QUEUED with an
estimated completion). A sending loop then hands each pending payout to the
payments cluster's CreatePayout with idempotency key = payout id (the router is
left to cluster 07: KYC for verified node workers, else V0), so a retry never pays
twice: PROCESSING with the payment's id, or FAILED with the refusal, audited. An
outage leaves the payout PENDING for the next round (retry_count grows). A
following loop polls GetPayout until CONFIRMED (COMPLETED, with the TRON txid) or
FAILED (audited). A PENDING payout may be cancelled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from lucid.lib import tron
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.nodes.alerts import FREQUENT_PAYOUTS, OUTLIER_FACTOR, Alerts
from lucid.nodes.callers import Caller, audit
from lucid.nodes.payments import PaymentsUnavailableError, PayoutRail
from lucid.nodes.store import DuplicateError
from lucid.nodes.store.nodes import NodeStore
from lucid.nodes.store.payouts import BatchRecord, PayoutQuery, PayoutRecord, PayoutStore
from lucid.nodes.v1 import payout_pb2 as ypb
from lucid.payments.v1 import payouts_pb2 as pay
from lucid.runtime.audit import AuditTrail
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError, not_found

log = logging.getLogger("lucid.nodes.payouts")

PENDING = ypb.PAYOUT_STATE_PENDING
PROCESSING = ypb.PAYOUT_STATE_PROCESSING
COMPLETED = ypb.PAYOUT_STATE_COMPLETED
FAILED = ypb.PAYOUT_STATE_FAILED
CANCELLED = ypb.PAYOUT_STATE_CANCELLED
CENT_MICROS = 10_000
BAD_PATTERNS = ("00000000", "ffffffff", "12345678")
SECONDS_PER_PAYOUT = 2.0
ROUND = 50


@dataclass(frozen=True)
class PayoutItem:
    """One requested payout."""

    node_id: str
    amount_micros: int
    currency: int
    wallet_address: str
    priority: int = 0
    reason: str = ""
    work_credits: float = 0.0
    epoch: int = 0


def address_problem(address: str) -> str | None:
    """Why a TRON address is refused, or None."""
    if not tron.is_address(address):
        return "not a TRON address (base58check)"
    lowered = tron.to_hex(address).lower()
    for pattern in BAD_PATTERNS:
        if pattern in lowered or pattern in address.lower():
            return f"contains the blacklisted pattern {pattern}"
    return None


def item_problems(index: int, item: PayoutItem) -> list[FieldViolation]:
    """The field violations of one item."""
    found = []
    if item.amount_micros % CENT_MICROS:
        found.append(
            FieldViolation(
                f"items[{index}].amount_micros", "cluster 07 pays whole cents (10,000 micros)"
            )
        )
    problem = address_problem(item.wallet_address)
    if problem:
        found.append(FieldViolation(f"items[{index}].wallet_address", problem))
    return found


@dataclass(frozen=True)
class BatchView:
    """A batch with its payouts."""

    batch: BatchRecord
    payouts: list[PayoutRecord]

    @property
    def state(self) -> int:
        """QUEUED, PROCESSING, COMPLETED, PARTIALLY_FAILED or FAILED from its payouts."""
        states = [p.state for p in self.payouts]
        done = {COMPLETED, FAILED, CANCELLED}
        if all(s == PENDING for s in states):
            return ypb.PAYOUT_BATCH_STATE_QUEUED
        if not all(s in done for s in states):
            return ypb.PAYOUT_BATCH_STATE_PROCESSING
        if all(s == COMPLETED for s in states):
            return ypb.PAYOUT_BATCH_STATE_COMPLETED
        if any(s == COMPLETED for s in states):
            return ypb.PAYOUT_BATCH_STATE_PARTIALLY_FAILED
        return ypb.PAYOUT_BATCH_STATE_FAILED


class Payouts:
    """Payout batches and their handoff."""

    def __init__(  # noqa: PLR0917 (wiring: every collaborator once)
        self,
        store: PayoutStore,
        nodes: NodeStore,
        rail: PayoutRail,
        audit: AuditTrail,
        clock: Clock,
        alerts: Alerts,
    ) -> None:
        self.alerts = alerts
        self.store = store
        self.nodes = nodes
        self.rail = rail
        self.audit = audit
        self.clock = clock

    async def submit(self, batch_id: str, items: list[PayoutItem], caller: Caller) -> BatchView:
        """Stores a batch (or returns the one stored under that id) and queues it."""
        existing = await self.store.batch(batch_id)
        if existing is not None:
            await self.store.finish_batch(batch_id)  # one interrupted half way resumes
            return BatchView(existing, await self.store.of_batch(batch_id))
        violations = [v for i, item in enumerate(items) for v in item_problems(i, item)]
        if violations:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"{len(violations)} payout items are invalid: {violations[0].description}",
                field_violations=violations,
            )
        owners: dict[str, str] = {}
        for item in items:
            if item.node_id not in owners:
                node = await self.nodes.get(item.node_id)
                if node is None:
                    raise not_found(f"node {item.node_id}")
                owners[item.node_id] = node.owner_user_id
        now = self.clock.now()
        payouts = [
            PayoutRecord(
                payout_id=new_id(),
                node_id=item.node_id,
                batch_id=batch_id,
                amount_micros=item.amount_micros,
                currency=item.currency,
                wallet_address=item.wallet_address,
                state=PENDING,
                created_at=now,
                updated_at=now,
                owner_user_id=owners[item.node_id],
                priority=item.priority,
                reason=item.reason,
                work_credits=item.work_credits,
                epoch=item.epoch,
            )
            for item in items
        ]
        batch = BatchRecord(
            batch_id=batch_id,
            payout_ids=[p.payout_id for p in payouts],
            total_amount_micros=sum(p.amount_micros for p in payouts),
            created_at=now,
            estimated_completion=now + timedelta(seconds=SECONDS_PER_PAYOUT * len(payouts)),
            requested_by=caller.display,
        )
        try:
            await self.store.insert_batch(batch, payouts)
        except DuplicateError:
            stored = await self.store.batch(batch_id)
            if stored is None:
                raise
            await self.store.finish_batch(batch_id)
            return BatchView(stored, await self.store.of_batch(batch_id))
        await audit(self.audit, caller, "payout.batch", batch_id, details={"count": len(items)})
        await self._watch(payouts, caller)
        return BatchView(batch, payouts)

    async def _watch(self, new: list[PayoutRecord], caller: Caller) -> None:
        """Alerts on a payout over 10x its node's average and on 3+ payouts in an hour."""
        for node_id in sorted({p.node_id for p in new}):
            earlier, _ = await self.store.page(PayoutQuery(node_id=node_id), 0, 100)
            mine = [p for p in new if p.node_id == node_id]
            before = [p for p in earlier if p.payout_id not in {m.payout_id for m in mine}]
            hour_ago = self.clock.now() - timedelta(hours=1)
            recent = [p for p in earlier if p.created_at >= hour_ago]
            if len(recent) >= FREQUENT_PAYOUTS:
                await self.alerts.raise_alert(
                    "payout_frequency", node_id, caller, {"payouts_in_1h": len(recent)}
                )
            if before:
                average = sum(p.amount_micros for p in before) / len(before)
                for payout in mine:
                    if payout.amount_micros > OUTLIER_FACTOR * average:
                        await self.alerts.raise_alert(
                            "payout_outlier",
                            payout.payout_id,
                            caller,
                            {"amount_micros": payout.amount_micros, "average": round(average)},
                        )

    async def batch(self, batch_id: str) -> BatchView:
        """A batch and its payouts."""
        stored = await self.store.batch(batch_id)
        if stored is None:
            raise not_found(f"payout batch {batch_id}")
        return BatchView(stored, await self.store.of_batch(batch_id))

    async def list(
        self, query: PayoutQuery, caller: Caller, offset: int, limit: int
    ) -> tuple[list[PayoutRecord], int]:
        """A page of the payouts the caller may see (operators: their nodes')."""
        if not caller.may_act_on("\0"):
            query = PayoutQuery(
                node_id=query.node_id,
                state=query.state,
                owner_user_id=caller.user_id,
                start=query.start,
                end=query.end,
            )
        return await self.store.page(query, offset, limit)

    async def paid(self, query: PayoutQuery, caller: Caller) -> int:
        """What was paid among the payouts the caller may see."""
        if not caller.may_act_on("\0"):
            query = PayoutQuery(query.node_id, query.state, caller.user_id, query.start, query.end)
        return await self.store.completed_sum(query)

    async def cancel(self, payout_id: str, reason: str, caller: Caller) -> PayoutRecord:
        """Cancels a pending payout."""
        payout = await self.store.get(payout_id)
        if payout is None:
            raise not_found(f"payout {payout_id}")
        cancelled = await self.store.transition(
            payout_id,
            (PENDING,),
            {"state": CANCELLED, "error_message": reason, "updated_at": self.clock.now()},
        )
        if cancelled is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"payout {payout_id} is {ypb.PayoutState.Name(payout.state)}; only a pending one "  # type: ignore[arg-type]
                "can be cancelled",
            )
        await audit(self.audit, caller, "payout.cancel", payout_id, details={"reason": reason})
        return cancelled

    async def recover(self) -> int:
        """Finishes writing batches interrupted half way; how many."""
        finished = 0
        for batch_id in await self.store.unfinished_batches():
            finished += await self.store.finish_batch(batch_id)
        return finished

    async def send_round(self) -> int:
        """Hands pending payouts to cluster 07; how many it took."""
        taken = 0
        for payout in await self.store.in_state(PENDING, ROUND):
            now = self.clock.now()
            try:
                answer = await self.rail.create(payout)
            except PaymentsUnavailableError as exc:
                await self.store.transition(
                    payout.payout_id,
                    (PENDING,),
                    {
                        "retry_count": payout.retry_count + 1,
                        "error_message": f"payments unavailable: {exc}",
                        "updated_at": now,
                    },
                )
                continue  # it stays pending for the next round
            except LucidError as exc:
                await self._fail(payout, exc.message)
                continue
            await self.store.transition(
                payout.payout_id,
                (PENDING,),
                {
                    "state": PROCESSING,
                    "payment_payout_id": answer.payout_id,
                    "error_message": "",
                    "updated_at": now,
                },
            )
            taken += 1
        return taken

    async def follow_round(self) -> None:
        """Reads back processing payouts until confirmed or failed."""
        for payout in await self.store.in_state(PROCESSING, ROUND):
            try:
                answer = await self.rail.status(payout.payment_payout_id)
            except (PaymentsUnavailableError, LucidError):
                return
            if answer.status == pay.PAYOUT_STATUS_CONFIRMED:
                await self.store.transition(
                    payout.payout_id,
                    (PROCESSING,),
                    {
                        "state": COMPLETED,
                        "tx_hash": answer.transaction.tx_hash,
                        "finish_time": self.clock.now(),
                        "updated_at": self.clock.now(),
                    },
                )
            elif answer.status in (pay.PAYOUT_STATUS_FAILED, pay.PAYOUT_STATUS_CANCELLED):
                await self._fail(payout, answer.error_message or "the payment failed")

    async def _fail(self, payout: PayoutRecord, reason: str) -> None:
        now = self.clock.now()
        failed = await self.store.transition(
            payout.payout_id,
            (PENDING, PROCESSING),
            {"state": FAILED, "error_message": reason, "finish_time": now, "updated_at": now},
        )
        if failed is not None:
            await audit(
                self.audit,
                Caller.cluster(),
                "payout.failed",
                payout.payout_id,
                failed=reason,
                details={"node_id": payout.node_id},
            )
