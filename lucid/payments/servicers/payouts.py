"""gRPC adapter of ``lucid.payments.v1.PayoutService``."""

from __future__ import annotations

from typing import Any

import grpc

from lucid.payments import convert
from lucid.payments.calls import CallLimits
from lucid.payments.controls import PayoutControls
from lucid.payments.payouts import Payouts
from lucid.payments.sender import PayoutSender
from lucid.payments.servicers import current_actor
from lucid.payments.v1 import payouts_pb2, payouts_pb2_grpc
from lucid.runtime import paging
from lucid.runtime.wire import epoch_seconds, timestamp

BREAKER_STATES = {
    "closed": payouts_pb2.BREAKER_STATE_CLOSED,
    "open": payouts_pb2.BREAKER_STATE_OPEN,
    "half_open": payouts_pb2.BREAKER_STATE_HALF_OPEN,
}


class PayoutServiceServicer(payouts_pb2_grpc.PayoutServiceServicer):
    """Payout rpcs."""

    def __init__(
        self,
        payouts: Payouts,
        sender: PayoutSender,
        controls: PayoutControls,
        confirmations: int,
        calls: CallLimits,
    ) -> None:
        self.calls = calls
        self.payouts = payouts
        self.sender = sender
        self.controls = controls
        self.confirmations = confirmations
        self.started = controls.clock.timestamp()

    def _payout(self, record: Any) -> payouts_pb2.Payout:
        return convert.payout(record, self.sender.head, self.confirmations)

    async def CreatePayout(
        self, request: payouts_pb2.CreatePayoutRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.CreatePayoutResponse:
        await self.calls.count()
        record, replayed = await self.payouts.create(
            current_actor(), convert.payout_request(request)
        )
        return payouts_pb2.CreatePayoutResponse(payout=self._payout(record), replayed=replayed)

    async def GetPayout(
        self, request: payouts_pb2.GetPayoutRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.GetPayoutResponse:
        await self.calls.count()
        record = await self.payouts.get(current_actor(), request.payout_id)
        return payouts_pb2.GetPayoutResponse(payout=self._payout(record))

    async def GetPayoutTransaction(
        self, request: payouts_pb2.GetPayoutTransactionRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.GetPayoutTransactionResponse:
        await self.calls.count()
        record = await self.payouts.get(current_actor(), request.payout_id)
        return payouts_pb2.GetPayoutTransactionResponse(
            payout_id=record.payout_id,
            status=convert.STATUS[record.status],
            transaction=convert.transaction(record.tx, self.sender.head, self.confirmations),
        )

    async def BulkPayoutStatus(
        self, request: payouts_pb2.BulkPayoutStatusRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.BulkPayoutStatusResponse:
        await self.calls.count()
        records = await self.payouts.bulk(current_actor(), list(request.payout_ids))
        entries = []
        for payout_id, record in zip(request.payout_ids, records, strict=True):
            entry = payouts_pb2.PayoutStatusEntry(payout_id=payout_id, found=record is not None)
            if record is not None:
                entry.status = convert.STATUS[record.status]
                entry.transaction.CopyFrom(
                    convert.transaction(record.tx, self.sender.head, self.confirmations)
                )
            entries.append(entry)
        return payouts_pb2.BulkPayoutStatusResponse(entries=entries)

    async def ListPayouts(
        self, request: payouts_pb2.ListPayoutsRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.ListPayoutsResponse:
        await self.calls.count()
        filters: dict[str, Any] = {}
        if request.status:
            filters["status"] = convert.STATUS_NAMES[request.status]
        if request.router_type:
            filters["router"] = convert.ROUTER_NAMES[request.router_type]
        for field, key in (
            ("recipient_address", "recipient"),
            ("node_id", "node_id"),
            ("user_id", "user_id"),
            ("batch_id", "batch_id"),
        ):
            if getattr(request, field):
                filters[key] = getattr(request, field)
        times: dict[str, float] = {}
        if request.HasField("start_time"):
            times["$gte"] = request.start_time.ToMicroseconds() / 1e6
        if request.HasField("end_time"):
            times["$lt"] = request.end_time.ToMicroseconds() / 1e6
        if times:
            filters["create_time"] = times
        actor = current_actor()
        page = paging.page(request, scope=actor.user_id)
        records, total = await self.payouts.list(actor, filters, page.offset, page.size)
        return payouts_pb2.ListPayoutsResponse(
            payouts=[self._payout(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )

    async def CancelPayout(
        self, request: payouts_pb2.CancelPayoutRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.CancelPayoutResponse:
        await self.calls.count()
        cancelled, record = await self.payouts.cancel(
            current_actor(), request.payout_id, request.reason
        )
        return payouts_pb2.CancelPayoutResponse(cancelled=cancelled, payout=self._payout(record))

    async def RetryPayout(
        self, request: payouts_pb2.RetryPayoutRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.RetryPayoutResponse:
        await self.calls.count()
        record = await self.controls.retry(current_actor(), request.payout_id)
        return payouts_pb2.RetryPayoutResponse(payout=self._payout(record))

    async def GetBreakerStatus(
        self, request: payouts_pb2.GetBreakerStatusRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.GetBreakerStatusResponse:
        await self.calls.count()
        report = await self.controls.breaker()
        limits = self.controls.limits.limits
        out = payouts_pb2.GetBreakerStatusResponse(
            state=BREAKER_STATES.get(report.state, payouts_pb2.BREAKER_STATE_UNSPECIFIED),
            failure_count=report.failures,
            limits=convert.limits(limits),
            hourly_used_amount_micros=report.hourly_used,
            daily_used_amount_micros=report.daily_used,
            hourly_remaining_amount_micros=max(0, limits.hourly - report.hourly_used),
            daily_remaining_amount_micros=max(0, limits.daily - report.daily_used),
            hourly_reset_time=timestamp(report.hourly_reset),
            daily_reset_time=timestamp(report.daily_reset),
            in_flight_payouts=report.in_flight,
            frozen=report.frozen,
        )
        if report.state == "open":
            out.open_time.CopyFrom(timestamp(report.opened_at))
            out.next_attempt_time.CopyFrom(timestamp(report.opened_at + report.retry_after_s))
        return out

    async def ResetBreaker(
        self, request: payouts_pb2.ResetBreakerRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.ResetBreakerResponse:
        await self.calls.count()
        await self.controls.reset_breaker(current_actor(), request.reason)
        return payouts_pb2.ResetBreakerResponse(state=payouts_pb2.BREAKER_STATE_CLOSED)

    async def SetPayoutFreeze(
        self, request: payouts_pb2.SetPayoutFreezeRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.SetPayoutFreezeResponse:
        await self.calls.count()
        held = await self.controls.set_freeze(current_actor(), request.frozen, request.reason)
        return payouts_pb2.SetPayoutFreezeResponse(frozen=request.frozen, held_payouts=held)

    async def GetPayoutStats(
        self, request: payouts_pb2.GetPayoutStatsRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.GetPayoutStatsResponse:
        await self.calls.count()
        now = self.controls.clock.timestamp()
        start = epoch_seconds(request.start_time) if request.HasField("start_time") else None
        end = epoch_seconds(request.end_time) if request.HasField("end_time") else now
        stats = await self.controls.stats(start if start is not None else end - 30 * 86_400, end)
        usage = await self.controls.router_usage()
        return convert.stats(stats, usage, self.controls.limits.limits)

    async def GetHealth(
        self, request: payouts_pb2.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.GetHealthResponse:
        await self.calls.count()
        deps = await self.controls.health()
        return convert.health(deps, self.controls.clock.timestamp(), self.started)

    async def CreatePayoutBatch(
        self, request: payouts_pb2.CreatePayoutBatchRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.CreatePayoutBatchResponse:
        await self.calls.count()
        batch, records, replayed = await self.payouts.create_batch(
            current_actor(),
            request.idempotency_key,
            [convert.batch_item(item) for item in request.items],
            request.batch_type or payouts_pb2.BATCH_TYPE_IMMEDIATE,
            request.priority or payouts_pb2.PAYOUT_PRIORITY_NORMAL,
        )
        return payouts_pb2.CreatePayoutBatchResponse(
            batch=convert.batch(batch, records),
            payouts=[self._payout(r) for r in records],
            replayed=replayed,
        )

    async def GetPayoutBatch(
        self, request: payouts_pb2.GetPayoutBatchRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.GetPayoutBatchResponse:
        await self.calls.count()
        batch, records = await self.payouts.get_batch(current_actor(), request.batch_id)
        return payouts_pb2.GetPayoutBatchResponse(batch=convert.batch(batch, records))

    async def UpdatePayoutLimits(
        self, request: payouts_pb2.UpdatePayoutLimitsRequest, context: grpc.aio.ServicerContext
    ) -> payouts_pb2.UpdatePayoutLimitsResponse:
        await self.calls.count()
        limits = await self.controls.update_limits(
            current_actor(),
            {
                "hourly": request.hourly_limit_amount_micros,
                "daily": request.daily_limit_amount_micros,
                "max_concurrent": request.max_concurrent_payouts,
                "v0_max": request.v0_max_amount_micros,
                "v0_daily": request.v0_daily_limit_amount_micros,
                "kyc_max": request.kyc_max_amount_micros,
                "kyc_daily": request.kyc_daily_limit_amount_micros,
            },
            request.reason,
        )
        return payouts_pb2.UpdatePayoutLimitsResponse(limits=convert.limits(limits))
