"""Payouts: idempotent creation, routing and limits, reads with ownership, cancellation.

A request's idempotency key is claimed by the unique index of the payout store:
a repeat (concurrent or later) gets the first payout back and never a second one.
Creation is serialized in the process so the limit check and the insert see the
same usage. Sending is the worker's (``lucid.payments.sender``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lucid.lib.clock import Clock
from lucid.payments.kyc import Kyc
from lucid.payments.limits import KYC, V0, LimitCheck
from lucid.payments.store.audit import AuditStore
from lucid.payments.store.batches import BatchKeyTakenError, BatchRecord, BatchStore
from lucid.payments.store.payouts import (
    CANCELLED,
    PENDING,
    DuplicateKeyUsedError,
    PayoutRecord,
    PayoutStore,
)
from lucid.payments.wallets import Actor, check_address
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.events import EventPublisher

ETA_S = {0: 300, 1: 300, 2: 3600, 3: 86_400, 4: 7 * 86_400}
"""Estimated completion by batch type: immediate +5 min, hourly, daily, weekly."""
IMMEDIATE = (0, 1)


@dataclass(frozen=True)
class PayoutRequest:
    """What a caller asks to be paid (amounts in micro-USDT)."""

    idempotency_key: str
    recipient: str
    amount_micros: int
    reason: str
    router: str = ""
    """``v0``, ``kyc`` or empty (the service chooses)."""
    priority: int = 2
    batch_type: int = 1
    session_id: str = ""
    node_id: str = ""
    kyc_hash: str = ""
    user_id: str = ""
    custom_data: dict[str, Any] = field(default_factory=dict)

    def same_payout(self, record: PayoutRecord) -> bool:
        return (
            record.recipient == self.recipient
            and record.amount_micros == self.amount_micros
            and (not self.node_id or record.node_id == self.node_id)
        )


class Payouts:
    """The payout rules."""

    def __init__(
        self,
        store: PayoutStore,
        audit: AuditStore,
        limits: LimitCheck,
        clock: Clock,
        *,
        batches: BatchStore,
        kyc: Kyc,
        ensure_funds: Callable[[int], Awaitable[None]],
        wake: Callable[[], None],
        events: EventPublisher | None = None,
        frozen: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.events = events
        self.frozen = frozen
        self.store = store
        self.batches = batches
        self.kyc = kyc
        self.audit = audit
        self.limits = limits
        self.clock = clock
        self.ensure_funds = ensure_funds
        self.wake = wake
        self._lock = asyncio.Lock()

    def _replay(self, request: PayoutRequest, existing: PayoutRecord) -> PayoutRecord:
        if not request.same_payout(existing):
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                "this idempotency key was used for a different payout",
                metadata={"payout_id": existing.payout_id},
            )
        return existing

    def _user_of(self, actor: Actor, request: PayoutRequest) -> str:
        foreign = request.user_id and request.user_id != actor.user_id
        if actor.user_id and foreign and not actor.sees_all:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED, "you may only request your own payouts"
            )
        return request.user_id or actor.user_id

    async def _router(self, request: PayoutRequest) -> str:
        """KYC when asked for (and then a valid record is required) or when a node with a
        kyc_hash has a valid record; V0 otherwise (spec 07 §4)."""
        if request.router == KYC:
            await self.kyc.require(request.node_id, request.kyc_hash, request.recipient)
            return KYC
        if not request.router and request.kyc_hash and request.node_id:
            _, reason = await self.kyc.verify(request.node_id, request.kyc_hash, request.recipient)
            return V0 if reason else KYC
        return V0

    def _record(self, request: PayoutRequest, user_id: str, router: str) -> PayoutRecord:
        now = self.clock.timestamp()
        return PayoutRecord(
            payout_id=str(uuid.uuid4()),
            idempotency_key=request.idempotency_key,
            user_id=user_id,
            recipient=request.recipient,
            amount_micros=request.amount_micros,
            router=router,
            priority=request.priority,
            batch_type=request.batch_type,
            reason=request.reason,
            create_time=now,
            update_time=now,
            estimated_completion_time=now + ETA_S.get(request.batch_type, 300),
            node_id=request.node_id,
            session_id=request.session_id,
            kyc_hash=request.kyc_hash,
            custom_data=dict(request.custom_data),
        )

    async def refuse_if_frozen(self) -> None:
        """A system lockdown (admin's mode) freezes payouts: none is created meanwhile,
        whoever asks (the nodes service included); nothing is stored."""
        if self.frozen is not None and await self.frozen():
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_ALLOWED,
                "payouts are frozen: the system is in lockdown",
                metadata={"mode": "lockdown"},
            )

    async def create(self, actor: Actor, request: PayoutRequest) -> tuple[PayoutRecord, bool]:
        """The payout of this key (a new one, or the first one: ``replayed``)."""
        check_address(request.recipient, "recipient_address")
        existing = await self.store.by_key(request.idempotency_key)
        if existing is not None:
            return self._replay(request, existing), True
        await self.refuse_if_frozen()
        user_id = self._user_of(actor, request)
        router = await self._router(request)
        if request.batch_type in IMMEDIATE:
            await self.ensure_funds(request.amount_micros)
        async with self._lock:  # the limit check and the insert see the same usage
            existing = await self.store.by_key(request.idempotency_key)
            if existing is not None:
                return self._replay(request, existing), True
            await self.limits.check(
                {router: request.amount_micros}, {router: request.amount_micros}
            )
            record = self._record(request, user_id, router)
            try:
                await self.store.insert(record)
            except DuplicateKeyUsedError as exc:  # another process took the key
                return self._replay(request, exc.existing), True
        await self.audit.record(
            "payout.created",
            actor.display,
            payout_id=record.payout_id,
            details={"amount_micros": record.amount_micros, "router": router},
        )
        if self.events is not None:
            self.events.emit(
                "payout.created",
                {
                    "payout_id": record.payout_id,
                    "user_id": user_id,
                    "amount_micros": record.amount_micros,
                    "router": router,
                    "by": actor.display,
                },
            )
        self.wake()
        return record, False

    async def create_batch(
        self,
        actor: Actor,
        key: str,
        requests: Sequence[PayoutRequest],
        batch_type: int,
        priority: int,
    ) -> tuple[BatchRecord, list[PayoutRecord], bool]:
        """A batch of 1-100 payouts, validated whole before any is stored or sent."""
        await self.refuse_if_frozen()
        existing = await self.batches.find({"idempotency_key": key})
        if existing is not None:
            if not existing.complete:
                await self.finish_batch(existing)
            return existing, await self._batch_payouts(existing), True
        keys = [r.idempotency_key for r in requests]
        if len(set(keys)) != len(keys):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "the items repeat an idempotency key"
            )
        amounts: dict[str, int] = {}
        largest: dict[str, int] = {}
        routed = []
        for index, request in enumerate(requests):
            check_address(request.recipient, f"items[{index}].recipient_address")
            router = await self._router(request)
            routed.append((request, self._user_of(actor, request), router))
            amounts[router] = amounts.get(router, 0) + request.amount_micros
            largest[router] = max(largest.get(router, 0), request.amount_micros)
        total = sum(amounts.values())
        if batch_type in IMMEDIATE:
            await self.ensure_funds(total)
        async with self._lock:
            taken = await self.store.many({"idempotency_key": {"$in": keys}}, limit=1)
            if taken:
                raise LucidError(
                    ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                    "an item's idempotency key is already used",
                    metadata={"idempotency_key": taken[0].idempotency_key},
                )
            await self.limits.check(amounts, largest)
            now = self.clock.timestamp()
            batch = BatchRecord(
                batch_id=str(uuid.uuid4()),
                idempotency_key=key,
                batch_type=batch_type,
                priority=priority,
                created_by=actor.user_id,
                create_time=now,
                estimated_completion_time=now + ETA_S.get(batch_type, 300),
                total_micros=total,
            )
            records = []
            for request, user_id, router in routed:
                record = self._record(request, user_id, router)
                record.batch_id, record.batch_type = batch.batch_id, batch_type
                record.priority = priority
                records.append(record)
            batch.payout_ids = [r.payout_id for r in records]
            batch.items, batch.complete = [r.to_doc() for r in records], False
            try:
                await self.batches.insert(batch)
            except BatchKeyTakenError:
                existing = await self.batches.find({"idempotency_key": key})
                assert existing is not None
                return existing, await self._batch_payouts(existing), True
            await self.store.insert_many(records)
            await self.batches.mark_complete(batch.batch_id)
        await self.audit.record(
            "payout_batch.created",
            actor.display,
            details={"batch_id": batch.batch_id, "count": len(records), "total_micros": total},
        )
        self.wake()
        return batch, records, False

    async def finish_batch(self, batch: BatchRecord) -> int:
        """Stores the payouts of a batch whose writer died before storing them all."""
        async with self._lock:
            stored = await self.store.insert_missing(
                [PayoutRecord.from_doc(doc) for doc in batch.items]
            )
            await self.batches.mark_complete(batch.batch_id)
        if stored:
            await self.audit.record(
                "payout_batch.recovered",
                "payments",
                details={"batch_id": batch.batch_id, "stored": stored},
            )
            self.wake()
        return stored

    async def recover_batches(self) -> int:
        """Completes every batch left incomplete (at start); how many payouts it stored."""
        return sum([await self.finish_batch(b) for b in await self.batches.incomplete()])

    async def _batch_payouts(self, batch: BatchRecord) -> list[PayoutRecord]:
        found = {r.payout_id: r for r in await self.store.many({"batch_id": batch.batch_id})}
        return [found[i] for i in batch.payout_ids if i in found]

    async def get_batch(
        self, actor: Actor, batch_id: str
    ) -> tuple[BatchRecord, list[PayoutRecord]]:
        batch = await self.batches.find({"_id": batch_id})
        if batch is None or not (actor.sees_all or batch.created_by == actor.user_id):
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such batch")
        return batch, await self._batch_payouts(batch)

    async def get(self, actor: Actor, payout_id: str) -> PayoutRecord:
        record = await self.store.get(payout_id)
        if record is None or not (actor.may_see(record.user_id) or not actor.user_id):
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such payout")
        return record

    async def bulk(self, actor: Actor, payout_ids: Sequence[str]) -> list[PayoutRecord | None]:
        out: list[PayoutRecord | None] = []
        for payout_id in payout_ids:
            record = await self.store.get(payout_id)
            visible = record is not None and (actor.may_see(record.user_id) or not actor.user_id)
            out.append(record if visible else None)
        return out

    async def list(
        self, actor: Actor, filters: dict[str, Any], offset: int, limit: int
    ) -> tuple[list[PayoutRecord], int]:
        query = dict(filters)
        wanted = query.get("user_id", "")
        if actor.user_id and not actor.sees_all:
            if wanted and wanted != actor.user_id:
                raise LucidError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, "not your payouts")
            query["user_id"] = actor.user_id
        return await self.store.page(query, offset, limit)

    async def cancel(self, actor: Actor, payout_id: str, reason: str) -> tuple[bool, PayoutRecord]:
        """Cancels a pending payout; ``False`` with its state when it has left pending."""
        record = await self.get(actor, payout_id)
        moved = await self.store.move(
            payout_id, [PENDING], {"status": CANCELLED, "update_time": self.clock.timestamp()}
        )
        if moved is None:
            current = await self.store.get(payout_id)
            assert current is not None
            return current.status == CANCELLED, current
        await self.audit.record(
            "payout.cancelled", actor.display, payout_id=payout_id, details={"reason": reason}
        )
        del record
        return True, moved
