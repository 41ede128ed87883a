"""gRPC adapter of ``lucid.payments.v1.KycService``."""

from __future__ import annotations

import grpc

from lucid.payments.calls import CallLimits
from lucid.payments.kyc import Kyc, Submission
from lucid.payments.servicers import current_actor
from lucid.payments.store.kyc import KycRecord
from lucid.payments.v1 import kyc_pb2, kyc_pb2_grpc
from lucid.runtime import paging
from lucid.runtime.wire import epoch_seconds, timestamp

STATUS = {
    "active": kyc_pb2.KYC_RECORD_STATUS_ACTIVE,
    "expired": kyc_pb2.KYC_RECORD_STATUS_EXPIRED,
    "revoked": kyc_pb2.KYC_RECORD_STATUS_REVOKED,
}
STATUS_NAMES = {v: k for k, v in STATUS.items()}


def record_message(record: KycRecord, now: float) -> kyc_pb2.KycRecord:
    status = record.status
    if status == "active" and record.expire_time <= now:
        status = "expired"
    out = kyc_pb2.KycRecord(
        kyc_record_id=record.kyc_record_id,
        node_id=record.node_id,
        user_id=record.user_id,
        kyc_hash=record.kyc_hash,
        recipient_address=record.recipient,
        level=record.level,
        status=STATUS[status],
        verifier_address=record.verifier,
        signed_time=timestamp(record.signed_time),
        create_time=timestamp(record.create_time),
        expire_time=timestamp(record.expire_time),
    )
    if record.revoke_time:
        out.revoke_time.CopyFrom(timestamp(record.revoke_time))
    return out


class KycServiceServicer(kyc_pb2_grpc.KycServiceServicer):
    """KYC record rpcs."""

    def __init__(self, kyc: Kyc, calls: CallLimits) -> None:
        self.kyc = kyc
        self.calls = calls

    def _message(self, record: KycRecord) -> kyc_pb2.KycRecord:
        return record_message(record, self.kyc.clock.timestamp())

    async def SubmitKycRecord(
        self, request: kyc_pb2.SubmitKycRecordRequest, context: grpc.aio.ServicerContext
    ) -> kyc_pb2.SubmitKycRecordResponse:
        await self.calls.count()
        record = await self.kyc.submit(
            current_actor(),
            Submission(
                node_id=request.node_id,
                user_id=request.user_id,
                kyc_hash=request.kyc_hash,
                recipient=request.recipient_address,
                level=request.level,
                verifier=request.verifier_address,
                signed_time=epoch_seconds(request.signed_time),
                signature=request.compliance_signature,
            ),
        )
        return kyc_pb2.SubmitKycRecordResponse(record=self._message(record))

    async def VerifyKyc(
        self, request: kyc_pb2.VerifyKycRequest, context: grpc.aio.ServicerContext
    ) -> kyc_pb2.VerifyKycResponse:
        await self.calls.count()
        record, reason = await self.kyc.verify(
            request.node_id, request.kyc_hash, request.recipient_address, request.min_level
        )
        out = kyc_pb2.VerifyKycResponse(verified=not reason, reason=reason)
        if record is not None:
            out.record.CopyFrom(self._message(record))
        return out

    async def GetKycRecord(
        self, request: kyc_pb2.GetKycRecordRequest, context: grpc.aio.ServicerContext
    ) -> kyc_pb2.GetKycRecordResponse:
        await self.calls.count()
        record = await self.kyc.get(current_actor(), request.kyc_record_id)
        return kyc_pb2.GetKycRecordResponse(record=self._message(record))

    async def ListKycRecords(
        self, request: kyc_pb2.ListKycRecordsRequest, context: grpc.aio.ServicerContext
    ) -> kyc_pb2.ListKycRecordsResponse:
        await self.calls.count()
        actor = current_actor()
        filters: dict[str, object] = {}
        if request.node_id:
            filters["node_id"] = request.node_id
        if request.user_id:
            filters["user_id"] = request.user_id
        if request.status:
            filters["status"] = STATUS_NAMES[request.status]
        page = paging.page(request, scope=actor.user_id)
        records, total = await self.kyc.list(actor, filters, page.offset, page.size)
        return kyc_pb2.ListKycRecordsResponse(
            records=[self._message(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )

    async def RevokeKycRecord(
        self, request: kyc_pb2.RevokeKycRecordRequest, context: grpc.aio.ServicerContext
    ) -> kyc_pb2.RevokeKycRecordResponse:
        await self.calls.count()
        record = await self.kyc.revoke(current_actor(), request.kyc_record_id, request.reason)
        return kyc_pb2.RevokeKycRecordResponse(record=self._message(record))
