"""``lucid.admin.v1.AdminPayoutService``: payouts from the console, through the payments
cluster."""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.payments_link import PayoutQuery
from lucid.admin.payout_ops import PayoutOps
from lucid.admin.v1 import operations_pb2, operations_pb2_grpc
from lucid.runtime.audit import client_of
from lucid.runtime.wire import moment


class AdminPayoutServicer(operations_pb2_grpc.AdminPayoutServiceServicer):
    """List, trigger and status."""

    def __init__(self, ops: PayoutOps) -> None:
        self.ops = ops

    async def ListPayouts(
        self, request: operations_pb2.ListPayoutsRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.ListPayoutsResponse:
        query = PayoutQuery(
            state=convert.stored(operations_pb2.PayoutState, "PAYOUT_STATE_", request.state),
            recipient_address="",
            start=moment(request.start_time) if request.HasField("start_time") else None,
            end=moment(request.end_time) if request.HasField("end_time") else None,
        )
        payouts, next_token, total = await self.ops.page(
            query, request.user_id, request.page_size, request.page_token
        )
        return operations_pb2.ListPayoutsResponse(
            payouts=[convert.admin_payout(p) for p in payouts],
            next_page_token=next_token,
            total_size=total,
        )

    async def TriggerPayout(
        self, request: operations_pb2.TriggerPayoutRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.TriggerPayoutResponse:
        made = await self.ops.trigger(
            request.request_id,
            list(request.user_ids),
            request.amount_micros,
            request.reason,
            client_of(context),
        )
        return operations_pb2.TriggerPayoutResponse(payouts=[convert.admin_payout(p) for p in made])

    async def GetPayoutStatus(
        self, request: operations_pb2.GetPayoutStatusRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.GetPayoutStatusResponse:
        return operations_pb2.GetPayoutStatusResponse(
            payout=convert.admin_payout(await self.ops.status(request.payout_id))
        )
