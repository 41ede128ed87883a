"""KYC records and the KYC router: compliance-signed (TIP-191, ≤ 24 h), bound to one
address, valid 365 days; a KYC payout without a valid record is refused, unpaid."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from tronpy.keys import PrivateKey

from lucid.payments.kyc import Submission, signed_message
from lucid.payments.servicers.kyc import KycServiceServicer
from lucid.payments.v1 import kyc_pb2, kyc_pb2_grpc, payouts_pb2
from lucid.runtime.config import Settings
from lucid.runtime.wire import timestamp
from tests.payments_support import USDT_UNIT, PaymentsBed, new_address, payments_bed
from tests.support import Mesh, details

S = payouts_pb2
OFFICER = PrivateKey.random()


@pytest.fixture
async def bed(settings: Settings, mesh: Mesh, tmp_path: Path) -> AsyncIterator[PaymentsBed]:
    async with payments_bed(settings, mesh, tmp_path) as bed:
        yield bed


def submission(
    recipient: str, *, age_s: float = 60.0, level: int = 2
) -> kyc_pb2.SubmitKycRecordRequest:
    node_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    kyc_hash = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    signed_at = float(int(time.time() - age_s))
    officer = str(OFFICER.public_key.to_base58check_address())
    message = signed_message(
        Submission(node_id, user_id, kyc_hash, recipient, level, officer, signed_at, "")
    )
    return kyc_pb2.SubmitKycRecordRequest(
        node_id=node_id,
        user_id=user_id,
        kyc_hash=kyc_hash,
        recipient_address=recipient,
        level=level,
        verifier_address=officer,
        signed_time=timestamp(signed_at),
        compliance_signature=OFFICER.sign_msg(message.encode()).hex(),
    )


def kyc_stub(bed: PaymentsBed) -> kyc_pb2_grpc.KycServiceStub:
    return kyc_pb2_grpc.KycServiceStub(bed.mesh.channel("payments", "admin"))


async def test_a_kyc_payout_with_a_valid_record_is_paid(bed: PaymentsBed) -> None:
    recipient = new_address()
    request = submission(recipient)
    record = (await kyc_stub(bed).SubmitKycRecord(request)).record
    assert record.status == kyc_pb2.KYC_RECORD_STATUS_ACTIVE
    assert record.expire_time.seconds - record.create_time.seconds == 365 * 86_400
    again = await kyc_stub(bed).SubmitKycRecord(request)
    assert again.record.kyc_record_id == record.kyc_record_id
    verified = await kyc_stub(bed).VerifyKyc(
        kyc_pb2.VerifyKycRequest(
            node_id=request.node_id, kyc_hash=request.kyc_hash, recipient_address=recipient
        )
    )
    assert verified.verified
    payout = await bed.create(
        recipient_address=recipient,
        amount_micros=5 * USDT_UNIT,
        router_type=S.ROUTER_TYPE_KYC,
        node_id=request.node_id,
        kyc_hash=request.kyc_hash,
    )
    assert payout.router_type == S.ROUTER_TYPE_KYC
    await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_BROADCAST)
    await bed.mine()
    assert await bed.usdt_of(recipient) == 5 * USDT_UNIT


async def test_kyc_payouts_without_a_valid_record_are_refused_unpaid(bed: PaymentsBed) -> None:
    recipient = new_address()
    request = submission(recipient)
    record = (await kyc_stub(bed).SubmitKycRecord(request)).record
    attempts = [
        {"node_id": request.node_id},  # no kyc_hash
        {"node_id": request.node_id, "kyc_hash": "ab" * 32},  # an unknown hash
        {"node_id": str(uuid.uuid4()), "kyc_hash": request.kyc_hash},  # another node's
    ]
    for fields in attempts:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await bed.create(recipient_address=recipient, router_type=S.ROUTER_TYPE_KYC, **fields)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, fields
        assert details(caught.value).reason == "LUCID_ERR_2012"
    store = next(
        s for _, s in bed.server.app.servicers if isinstance(s, KycServiceServicer)
    ).kyc.store
    await store.collection.update_one(
        {"_id": record.kyc_record_id}, {"$set": {"expire_time": time.time() - 1}}
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bed.create(
            recipient_address=recipient,
            router_type=S.ROUTER_TYPE_KYC,
            node_id=request.node_id,
            kyc_hash=request.kyc_hash,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(caught.value).metadata["reason"] == "expired"
    listed = await bed.stub().ListPayouts(S.ListPayoutsRequest())
    assert listed.total_size == 0
    await bed.mine()
    assert await bed.usdt_of(recipient) == 0


async def test_a_compliance_signature_must_be_fresh_and_genuine(bed: PaymentsBed) -> None:
    stale = submission(new_address(), age_s=25 * 3600)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await kyc_stub(bed).SubmitKycRecord(stale)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    forged = submission(new_address())
    forged.level = 5  # not what the officer signed
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await kyc_stub(bed).SubmitKycRecord(forged)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    taken = submission(new_address())
    await kyc_stub(bed).SubmitKycRecord(taken)
    rebound = submission(new_address())
    rebound.kyc_hash = taken.kyc_hash
    rebound.node_id = taken.node_id
    message = signed_message(
        Submission(
            rebound.node_id, rebound.user_id, rebound.kyc_hash, rebound.recipient_address,
            rebound.level, rebound.verifier_address, float(rebound.signed_time.seconds), "",
        )
    )  # fmt: skip
    rebound.compliance_signature = OFFICER.sign_msg(message.encode()).hex()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await kyc_stub(bed).SubmitKycRecord(rebound)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_records_are_listed_and_revoked(bed: PaymentsBed) -> None:
    stub = kyc_stub(bed)
    request = submission(new_address())
    record = (await stub.SubmitKycRecord(request)).record
    listed = await stub.ListKycRecords(kyc_pb2.ListKycRecordsRequest(node_id=request.node_id))
    assert [r.kyc_record_id for r in listed.records] == [record.kyc_record_id]
    revoked = await stub.RevokeKycRecord(
        kyc_pb2.RevokeKycRecordRequest(kyc_record_id=record.kyc_record_id, reason="fraud")
    )
    assert revoked.record.status == kyc_pb2.KYC_RECORD_STATUS_REVOKED
    verified = await stub.VerifyKyc(
        kyc_pb2.VerifyKycRequest(
            node_id=request.node_id,
            kyc_hash=request.kyc_hash,
            recipient_address=request.recipient_address,
        )
    )
    assert not verified.verified and verified.reason == "revoked"
    active = await stub.ListKycRecords(
        kyc_pb2.ListKycRecordsRequest(
            node_id=request.node_id, status=kyc_pb2.KYC_RECORD_STATUS_ACTIVE
        )
    )
    assert active.total_size == 0
