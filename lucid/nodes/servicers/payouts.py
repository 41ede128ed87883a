"""PayoutService: payout batches, lists, the schedule and cancellation."""

from __future__ import annotations

import grpc

from lucid.nodes import convert
from lucid.nodes.limits import RateLimiter
from lucid.nodes.payouts import BatchView, PayoutItem, Payouts
from lucid.nodes.schedule import Schedule
from lucid.nodes.servicers.nodes import caller
from lucid.nodes.store.payouts import PayoutQuery
from lucid.nodes.v1 import payout_pb2 as ypb
from lucid.nodes.v1 import payout_pb2_grpc
from lucid.runtime import paging, wire


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
        estimated_completion_time=wire.optional_timestamp(view.batch.estimated_completion),
        create_time=wire.optional_timestamp(view.batch.created_at),
        finish_time=wire.optional_timestamp(max(finished)) if done and finished else None,
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
        who = caller(context)
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
            estimated_completion_time=wire.optional_timestamp(view.batch.estimated_completion),
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
        page = paging.page(request, scope=caller(context).user_id)
        records, total = await self.payouts.list(
            PayoutQuery(node_id=request.node_id, state=request.state),
            caller(context),
            page.offset,
            page.size,
        )
        return ypb.ListNodePayoutsResponse(
            payouts=[convert.payout(r) for r in records],
            next_page_token=page.next_token(len(records), total),
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
        schedule = await self.schedule.update(changes, caller(context))
        return ypb.UpdatePayoutScheduleResponse(schedule=convert.schedule(schedule))

    async def GetPayoutHistory(
        self, request: ypb.GetPayoutHistoryRequest, context: grpc.aio.ServicerContext
    ) -> ypb.GetPayoutHistoryResponse:
        page = paging.page(request, scope=caller(context).user_id)
        query = PayoutQuery(
            node_id=request.node_id,
            state=request.state,
            start=wire.moment(request.start_time) if request.HasField("start_time") else None,
            end=wire.moment(request.end_time) if request.HasField("end_time") else None,
        )
        who = caller(context)
        records, total = await self.payouts.list(query, who, page.offset, page.size)
        return ypb.GetPayoutHistoryResponse(
            payouts=[convert.payout(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
            total_paid_micros=await self.payouts.paid(query, who),
        )

    async def CancelNodePayout(
        self, request: ypb.CancelNodePayoutRequest, context: grpc.aio.ServicerContext
    ) -> ypb.CancelNodePayoutResponse:
        who = caller(context)
        await self.limiter.check("payout", who.display)
        record = await self.payouts.cancel(request.payout_id, request.reason, who)
        return ypb.CancelNodePayoutResponse(payout=convert.payout(record))
