"""gRPC adapter of ``lucid.payments.v1.PaymentService`` (reconciliation so far)."""

from __future__ import annotations

import grpc

from lucid.payments.reconcile import (
    MISMATCH,
    MISSING,
    STATUS_MISMATCH,
    UNCONFIRMED,
    Reconciler,
)
from lucid.payments.servicers import current_actor
from lucid.payments.v1 import payments_pb2, payments_pb2_grpc
from lucid.runtime.wire import epoch_seconds, timestamp

ISSUES = {
    MISSING: payments_pb2.RECONCILIATION_ISSUE_MISSING_ON_CHAIN,
    MISMATCH: payments_pb2.RECONCILIATION_ISSUE_MISMATCH,
    UNCONFIRMED: payments_pb2.RECONCILIATION_ISSUE_UNCONFIRMED,
    STATUS_MISMATCH: payments_pb2.RECONCILIATION_ISSUE_STATUS_MISMATCH,
}


class PaymentServiceServicer(payments_pb2_grpc.PaymentServiceServicer):
    """Payment rpcs."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler

    async def ReconcilePayments(
        self, request: payments_pb2.ReconcilePaymentsRequest, context: grpc.aio.ServicerContext
    ) -> payments_pb2.ReconcilePaymentsResponse:
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
