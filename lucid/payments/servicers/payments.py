"""gRPC adapter of ``lucid.payments.v1.PaymentService``: payments, refunds, reconciliation."""

from __future__ import annotations

from typing import Any

import grpc

from lucid.payments import convert
from lucid.payments.calls import CallLimits
from lucid.payments.reconcile import (
    MISMATCH,
    MISSING,
    STATUS_MISMATCH,
    UNCONFIRMED,
    Reconciler,
)
from lucid.payments.servicers import current_actor
from lucid.payments.store.transfers import PAYMENT
from lucid.payments.transfers import Send, Transfers
from lucid.payments.v1 import payments_pb2, payments_pb2_grpc, wallets_pb2
from lucid.runtime import paging
from lucid.runtime.wire import epoch_seconds, timestamp

ISSUES = {
    MISSING: payments_pb2.RECONCILIATION_ISSUE_MISSING_ON_CHAIN,
    MISMATCH: payments_pb2.RECONCILIATION_ISSUE_MISMATCH,
    UNCONFIRMED: payments_pb2.RECONCILIATION_ISSUE_UNCONFIRMED,
    STATUS_MISMATCH: payments_pb2.RECONCILIATION_ISSUE_STATUS_MISMATCH,
}


class PaymentServiceServicer(payments_pb2_grpc.PaymentServiceServicer):
    """Payment rpcs."""

    def __init__(
        self, reconciler: Reconciler, transfers: Transfers, confirmations: int, calls: CallLimits
    ) -> None:
        self.calls = calls
        self.reconciler = reconciler
        self.transfers = transfers
        self.confirmations = confirmations

    def _payment(self, record: Any) -> payments_pb2.Payment:
        return convert.payment(record, self.transfers.sender.head, self.confirmations)

    async def CreatePayment(
        self, request: payments_pb2.CreatePaymentRequest, context: grpc.aio.ServicerContext
    ) -> payments_pb2.CreatePaymentResponse:
        await self.calls.count()
        record = await self.transfers.send(
            current_actor(),
            PAYMENT,
            Send(
                idempotency_key=request.idempotency_key,
                wallet_id=request.wallet_id,
                currency=request.currency,
                amount_micros=request.amount_micros,
                recipient=request.recipient_address,
                memo=request.memo,
                tx_type=wallets_pb2.WALLET_TRANSACTION_TYPE_PAYMENT,
                reference=request.reference,
                webhook_url=request.webhook_url,
            ),
        )
        return payments_pb2.CreatePaymentResponse(payment=self._payment(record))

    async def GetPayment(
        self, request: payments_pb2.GetPaymentRequest, context: grpc.aio.ServicerContext
    ) -> payments_pb2.GetPaymentResponse:
        await self.calls.count()
        record, refunds = await self.transfers.payment(current_actor(), request.payment_id)
        head = self.transfers.sender.head
        return payments_pb2.GetPaymentResponse(
            payment=self._payment(record),
            refunds=[convert.refund(r, head, self.confirmations) for r in refunds],
        )

    async def ListPayments(
        self, request: payments_pb2.ListPaymentsRequest, context: grpc.aio.ServicerContext
    ) -> payments_pb2.ListPaymentsResponse:
        await self.calls.count()
        filters: dict[str, Any] = {}
        if request.user_id:
            filters["user_id"] = request.user_id
        if request.wallet_id:
            filters["wallet_id"] = request.wallet_id
        if request.status:
            filters["status"] = convert.PAYMENT_STATUS_NAMES[request.status]
        if request.reference:
            filters["reference"] = request.reference
        times: dict[str, float] = {}
        if request.HasField("start_time"):
            times["$gte"] = epoch_seconds(request.start_time)
        if request.HasField("end_time"):
            times["$lt"] = epoch_seconds(request.end_time)
        if times:
            filters["create_time"] = times
        actor = current_actor()
        page = paging.page(request, scope=actor.user_id)
        records, total = await self.transfers.payments(actor, filters, page.offset, page.size)
        return payments_pb2.ListPaymentsResponse(
            payments=[self._payment(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )

    async def RefundPayment(
        self, request: payments_pb2.RefundPaymentRequest, context: grpc.aio.ServicerContext
    ) -> payments_pb2.RefundPaymentResponse:
        await self.calls.count()
        refund, payment = await self.transfers.refund(
            current_actor(),
            request.payment_id,
            request.amount_micros,
            request.reason,
            request.idempotency_key,
        )
        return payments_pb2.RefundPaymentResponse(
            refund=convert.refund(refund, self.transfers.sender.head, self.confirmations),
            payment=self._payment(payment),
        )

    async def ReconcilePayments(
        self, request: payments_pb2.ReconcilePaymentsRequest, context: grpc.aio.ServicerContext
    ) -> payments_pb2.ReconcilePaymentsResponse:
        await self.calls.count()
        report = await self.reconciler.run(
            current_actor().display,
            epoch_seconds(request.start_time),
            epoch_seconds(request.end_time),
        )
        return payments_pb2.ReconcilePaymentsResponse(
            reconciliation_id=report.reconciliation_id,
            checked_count=report.checked,
            matched_count=report.matched,
            mismatches=[
                payments_pb2.ReconciliationMismatch(
                    record_type=m.record_type,
                    record_id=m.record_id,
                    tx_hash=m.tx_hash,
                    issue=ISSUES[m.issue],
                    detail=m.detail,
                )
                for m in report.mismatches
            ],
            complete_time=timestamp(report.complete_time),
        )
