"""PayoutService: payout batches, lists, the schedule and cancellation."""

from __future__ import annotations

import grpc

from lucid.nodes import convert, paging
from lucid.nodes.limits import RateLimiter
from lucid.nodes.payouts import BatchView, PayoutItem, Payouts
from lucid.nodes.schedule import Schedule
from lucid.nodes.servicers.nodes import caller
from lucid.nodes.store.payouts import PayoutQuery
from lucid.nodes.v1 import payout_pb2 as ypb
from lucid.nodes.v1 import payout_pb2_grpc


def batch_message(view: BatchView) -> ypb.PayoutBatch:
    """A PayoutBatch."""
    counts: dict[int, int] = {}
    for payout in view.payouts:
        counts[payout.state] = counts.get(payout.state, 0) + 1
    finished = [p.finish_time for p in view.payouts if p.finish_time]
    done = view.state not in (
        ypb.PAYOUT_BATCH_STATE_QUEUED,
        ypb.PAYOUT_BATCH_STATE_PROCESSING,
    )
    return ypb.PayoutBatch(
        batch_id=view.batch.batch_id,
        state=view.state,  # type: ignore[arg-type]
        payout_count=len(view.payouts),
        total_amount_micros=view.batch.total_amount_micros,
        by_state=[
            ypb.PayoutStateCount(state=s, count=c)  # type: ignore[arg-type]
            for s, c in sorted(counts.items())
        ],
        estimated_completion_time=convert.stamp(view.batch.estimated_completion),
        create_time=convert.stamp(view.batch.created_at),
        finish_time=convert.stamp(max(finished)) if done and finished else None,
    )


class PayoutServiceServicer(payout_pb2_grpc.PayoutServiceServicer):
    """Translates PayoutService calls to the payout domain (50 changes a minute)."""

    def __init__(self, payouts: Payouts, schedule: Schedule, limiter: RateLimiter) -> None:
        self.payouts = payouts
        self.schedule = schedule
        self.limiter = limiter

    async def BatchPayouts(
        self, request: ypb.BatchPayoutsRequest, context: grpc.aio.ServicerContext
    ) -> ypb.BatchPayoutsResponse:
        who = caller()
        await self.limiter.check("payout", who.display)
        items = [
            PayoutItem(
                node_id=i.node_id,
                amount_micros=i.amount_micros,
                currency=i.currency,
                wallet_address=i.wallet_address,
                priority=i.priority,
                reason=i.reason,
                work_credits=i.work_credits,
                epoch=i.epoch,
            )
            for i in request.items
        ]
        view = await self.payouts.submit(request.batch_id, items, who)
        return ypb.BatchPayoutsResponse(
            batch_id=view.batch.batch_id,
            state=view.state,  # type: ignore[arg-type]
            estimated_completion_time=convert.stamp(view.batch.estimated_completion),
            payout_ids=view.batch.payout_ids,
        )

    async def GetPayoutBatch(
        self, request: ypb.GetPayoutBatchRequest, context: grpc.aio.ServicerContext
    ) -> ypb.GetPayoutBatchResponse:
        return ypb.GetPayoutBatchResponse(
            batch=batch_message(await self.payouts.batch(request.batch_id))
        )

    async def ListNodePayouts(
        self, request: ypb.ListNodePayoutsRequest, context: grpc.aio.ServicerContext
    ) -> ypb.ListNodePayoutsResponse:
        offset, size = paging.page(request.page_size, request.page_token)
        records, total = await self.payouts.list(
            PayoutQuery(node_id=request.node_id, state=request.state), caller(), offset, size
        )
        return ypb.ListNodePayoutsResponse(
            payouts=[convert.payout(r) for r in records],
            next_page_token=paging.next_token(offset, len(records), total),
            total_size=total,
        )

    async def GetPayoutSchedule(
        self, request: ypb.GetPayoutScheduleRequest, context: grpc.aio.ServicerContext
    ) -> ypb.GetPayoutScheduleResponse:
        return ypb.GetPayoutScheduleResponse(schedule=convert.schedule(await self.schedule.get()))

    async def UpdatePayoutSchedule(
        self, request: ypb.UpdatePayoutScheduleRequest, context: grpc.aio.ServicerContext
    ) -> ypb.UpdatePayoutScheduleResponse:
        changes: dict[str, object] = {}
        for name in ("enabled", "commission_percent", "uptime_bonus_percent"):
            if request.HasField(name):
                changes[name] = getattr(request, name)
        for name in (
            "cadence",
            "epoch_budget_micros",
            "minimum_payout_micros",
            "minimum_interval_seconds",
        ):
            if getattr(request, name):
                changes[name] = getattr(request, name)
        schedule = await self.schedule.update(changes, caller())
        return ypb.UpdatePayoutScheduleResponse(schedule=convert.schedule(schedule))

    async def GetPayoutHistory(
        self, request: ypb.GetPayoutHistoryRequest, context: grpc.aio.ServicerContext
    ) -> ypb.GetPayoutHistoryResponse:
        offset, size = paging.page(request.page_size, request.page_token)
        query = PayoutQuery(
            node_id=request.node_id,
            state=request.state,
            start=convert.when(request.start_time) if request.HasField("start_time") else None,
            end=convert.when(request.end_time) if request.HasField("end_time") else None,
        )
        who = caller()
        records, total = await self.payouts.list(query, who, offset, size)
        return ypb.GetPayoutHistoryResponse(
            payouts=[convert.payout(r) for r in records],
            next_page_token=paging.next_token(offset, len(records), total),
            total_size=total,
            total_paid_micros=await self.payouts.paid(query, who),
        )

    async def CancelNodePayout(
        self, request: ypb.CancelNodePayoutRequest, context: grpc.aio.ServicerContext
    ) -> ypb.CancelNodePayoutResponse:
        who = caller()
        await self.limiter.check("payout", who.display)
        record = await self.payouts.cancel(request.payout_id, request.reason, who)
        return ypb.CancelNodePayoutResponse(payout=convert.payout(record))
