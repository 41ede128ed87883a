"""Proto ↔ record mapping of the payments contract."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from lucid.payments.limits import KYC, V0
from lucid.payments.payouts import PayoutRequest
from lucid.payments.store.payouts import PayoutRecord, SentTx
from lucid.payments.store.wallets import WalletRecord
from lucid.payments.v1 import payouts_pb2, tron_pb2, wallets_pb2
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.wire import timestamp

STATUS = {
    "pending": payouts_pb2.PAYOUT_STATUS_PENDING,
    "processing": payouts_pb2.PAYOUT_STATUS_PROCESSING,
    "broadcast": payouts_pb2.PAYOUT_STATUS_BROADCAST,
    "confirmed": payouts_pb2.PAYOUT_STATUS_CONFIRMED,
    "failed": payouts_pb2.PAYOUT_STATUS_FAILED,
    "cancelled": payouts_pb2.PAYOUT_STATUS_CANCELLED,
}
STATUS_NAMES = {v: k for k, v in STATUS.items()}
ROUTER = {V0: payouts_pb2.ROUTER_TYPE_V0, KYC: payouts_pb2.ROUTER_TYPE_KYC}
ROUTER_NAMES = {v: k for k, v in ROUTER.items()}
TX_RESULT = {
    "SUCCESS": tron_pb2.TRON_TX_RESULT_SUCCESS,
    "REVERT": tron_pb2.TRON_TX_RESULT_REVERT,
    "OUT_OF_ENERGY": tron_pb2.TRON_TX_RESULT_OUT_OF_ENERGY,
}
WALLET_TYPE = {
    "hot": wallets_pb2.WALLET_TYPE_HOT,
    "cold": wallets_pb2.WALLET_TYPE_COLD,
    "multisig": wallets_pb2.WALLET_TYPE_MULTISIG,
    "hardware": wallets_pb2.WALLET_TYPE_HARDWARE,
}
WALLET_TYPE_NAMES = {v: k for k, v in WALLET_TYPE.items()}
WALLET_STATUS = {
    "active": wallets_pb2.WALLET_STATUS_ACTIVE,
    "inactive": wallets_pb2.WALLET_STATUS_INACTIVE,
    "locked": wallets_pb2.WALLET_STATUS_LOCKED,
    "archived": wallets_pb2.WALLET_STATUS_ARCHIVED,
}
WALLET_STATUS_NAMES = {v: k for k, v in WALLET_STATUS.items()}


def payout_request(request: payouts_pb2.CreatePayoutRequest) -> PayoutRequest:
    return PayoutRequest(
        idempotency_key=request.idempotency_key,
        recipient=request.recipient_address,
        amount_micros=request.amount_micros,
        reason=request.reason,
        router=ROUTER_NAMES.get(request.router_type, ""),
        priority=request.priority or payouts_pb2.PAYOUT_PRIORITY_NORMAL,
        batch_type=request.batch_type or payouts_pb2.BATCH_TYPE_IMMEDIATE,
        session_id=request.session_id,
        node_id=request.node_id,
        kyc_hash=request.kyc_hash,
        user_id=request.user_id,
        custom_data=json_format.MessageToDict(request.custom_data),
    )


def transaction(tx: SentTx | None, head: int, required: int) -> tron_pb2.TronTransaction:
    if tx is None:
        return tron_pb2.TronTransaction()
    out = tron_pb2.TronTransaction(
        tx_hash=tx.txid,
        required_confirmations=required,
        block_number=tx.block_number,
        fee_amount_micros=tx.fee_sun,
        energy_used=tx.energy_used,
        bandwidth_used=tx.bandwidth_used,
        result=TX_RESULT.get(tx.result, tron_pb2.TRON_TX_RESULT_UNSPECIFIED),
        result_message=tx.result_message,
    )
    if tx.block_number:
        out.block_time.CopyFrom(timestamp(tx.block_time))
        out.confirmations = max(0, head - tx.block_number + 1)
    if tx.result and tx.result not in TX_RESULT and tx.block_number:
        out.result = tron_pb2.TRON_TX_RESULT_FAILED
    return out


def payout(record: PayoutRecord, head: int, required: int) -> payouts_pb2.Payout:
    out = payouts_pb2.Payout(
        payout_id=record.payout_id,
        user_id=record.user_id,
        node_id=record.node_id,
        session_id=record.session_id,
        recipient_address=record.recipient,
        amount_micros=record.amount_micros,
        router_type=ROUTER.get(record.router, payouts_pb2.ROUTER_TYPE_UNSPECIFIED),
        priority=record.priority,  # type: ignore[arg-type]
        batch_type=record.batch_type,  # type: ignore[arg-type]
        batch_id=record.batch_id,
        kyc_hash=record.kyc_hash,
        reason=record.reason,
        status=STATUS[record.status],
        retry_count=record.retry_count,
        error_message=record.error_message,
        idempotency_key=record.idempotency_key,
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
        estimated_completion_time=timestamp(record.estimated_completion_time),
    )
    if record.tx is not None:
        out.transaction.CopyFrom(transaction(record.tx, head, required))
    if record.custom_data:
        out.custom_data.CopyFrom(_struct(record.custom_data))
    if record.confirm_time:
        out.confirm_time.CopyFrom(timestamp(record.confirm_time))
    return out


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(data)
    return out


def wallet(record: WalletRecord) -> wallets_pb2.Wallet:
    return wallets_pb2.Wallet(
        wallet_id=record.wallet_id,
        user_id=record.user_id,
        name=record.name,
        address=record.address,
        currency=record.currency,  # type: ignore[arg-type]
        wallet_type=WALLET_TYPE[record.wallet_type],
        status=WALLET_STATUS[record.status],
        network="TRON",
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
    )


def page_offset(token: str) -> int:
    """The offset a page token carries (tokens are the decimal offset)."""
    if not token:
        return 0
    if not token.isdigit() or len(token) > 9:
        raise LucidError(ErrorCode.ERROR_CODE_INVALID_PAGE_TOKEN, "invalid page token")
    return int(token)


def next_token(offset: int, count: int, total: int) -> str:
    return str(offset + count) if offset + count < total else ""
