"""Proto ↔ record mapping of the payments contract."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from lucid.payments.controls import Dependency, Stats
from lucid.payments.limits import KYC, V0, PayoutLimits
from lucid.payments.payouts import PayoutRequest
from lucid.payments.stakes import VerifiedStake
from lucid.payments.store.batches import BatchRecord
from lucid.payments.store.payouts import PayoutRecord, SentTx
from lucid.payments.store.transfers import TransferRecord
from lucid.payments.store.wallets import WalletRecord
from lucid.payments.v1 import payments_pb2, payouts_pb2, tron_pb2, wallets_pb2
from lucid.runtime.wire import duration, timestamp

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


def batch_item(item: payouts_pb2.PayoutBatchItem) -> PayoutRequest:
    return PayoutRequest(
        idempotency_key=item.idempotency_key,
        recipient=item.recipient_address,
        amount_micros=item.amount_micros,
        reason=item.reason,
        router=ROUTER_NAMES.get(item.router_type, ""),
        session_id=item.session_id,
        node_id=item.node_id,
        kyc_hash=item.kyc_hash,
        user_id=item.user_id,
        custom_data=json_format.MessageToDict(item.custom_data),
    )


def batch(record: BatchRecord, payouts: list[PayoutRecord]) -> payouts_pb2.PayoutBatch:
    counts: dict[str, int] = {}
    for p in payouts:
        counts[p.status] = counts.get(p.status, 0) + 1
    return payouts_pb2.PayoutBatch(
        batch_id=record.batch_id,
        batch_type=record.batch_type,  # type: ignore[arg-type]
        priority=record.priority,  # type: ignore[arg-type]
        status=_batch_status(counts, len(payouts)),
        payout_ids=record.payout_ids,
        total_amount_micros=record.total_micros,
        payout_count=len(record.payout_ids),
        status_counts=[
            payouts_pb2.PayoutStatusCount(status=STATUS[name], count=n)
            for name, n in sorted(counts.items())
        ],
        idempotency_key=record.idempotency_key,
        created_by=record.created_by,
        create_time=timestamp(record.create_time),
        estimated_completion_time=timestamp(record.estimated_completion_time),
    )


def _batch_status(counts: dict[str, int], total: int) -> payouts_pb2.PayoutBatchStatus.ValueType:
    done = counts.get("confirmed", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
    if total and counts.get("confirmed", 0) == total:
        return payouts_pb2.PAYOUT_BATCH_STATUS_COMPLETED
    if total and done == total:
        if counts.get("confirmed", 0):
            return payouts_pb2.PAYOUT_BATCH_STATUS_PARTIALLY_FAILED
        return payouts_pb2.PAYOUT_BATCH_STATUS_FAILED
    if counts.get("pending", 0) == total:
        return payouts_pb2.PAYOUT_BATCH_STATUS_PENDING
    return payouts_pb2.PAYOUT_BATCH_STATUS_PROCESSING


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


def limits(values: PayoutLimits) -> payouts_pb2.PayoutLimits:
    return payouts_pb2.PayoutLimits(
        hourly_limit_amount_micros=values.hourly,
        daily_limit_amount_micros=values.daily,
        max_concurrent_payouts=values.max_concurrent,
        v0_max_amount_micros=values.v0_max,
        v0_daily_limit_amount_micros=values.v0_daily,
        kyc_max_amount_micros=values.kyc_max,
        kyc_daily_limit_amount_micros=values.kyc_daily,
    )


def stats(
    values: Stats, usage: dict[str, int], caps: PayoutLimits
) -> payouts_pb2.GetPayoutStatsResponse:
    daily_caps = {V0: caps.v0_daily, KYC: caps.kyc_daily}
    return payouts_pb2.GetPayoutStatsResponse(
        total_count=values.total,
        status_counts=[
            payouts_pb2.PayoutStatusCount(status=STATUS[name], count=count)
            for name, count in sorted(values.by_status.items())
        ],
        success_rate=values.success_rate,
        confirmed_amount_micros=values.confirmed_amount,
        routers=[
            payouts_pb2.RouterTotals(
                router_type=ROUTER[name],
                payout_count=totals["count"],
                confirmed_count=totals["confirmed"],
                confirmed_amount_micros=totals["amount"],
                daily_used_amount_micros=usage.get(name, 0),
                daily_limit_amount_micros=daily_caps.get(name, 0),
            )
            for name, totals in values.routers.items()
            if name in ROUTER
        ],
        fee_amount_micros=values.fees_sun,
        confirmation_p50=duration(values.confirmation_p50_s),
        confirmation_p95=duration(values.confirmation_p95_s),
        pending_count=values.pending,
    )


def health(deps: list[Dependency], now: float, started: float) -> payouts_pb2.GetHealthResponse:
    def status(dep: Dependency) -> payouts_pb2.HealthStatus.ValueType:
        if not dep.healthy:
            return payouts_pb2.HEALTH_STATUS_UNHEALTHY
        if dep.degraded:
            return payouts_pb2.HEALTH_STATUS_DEGRADED
        return payouts_pb2.HEALTH_STATUS_HEALTHY

    entries = [
        payouts_pb2.DependencyHealth(
            name=d.name, status=status(d), response_time_ms=d.response_ms, message=d.message
        )
        for d in deps
    ]
    overall = max((e.status for e in entries), default=payouts_pb2.HEALTH_STATUS_HEALTHY)
    return payouts_pb2.GetHealthResponse(
        status=overall,
        service="tron-payment",
        version="0.1.0",
        check_time=timestamp(now),
        dependencies=entries,
        uptime=duration(max(0.0, now - started)),
    )


TRANSFER_STATUS = {
    "pending": tron_pb2.TRANSFER_STATUS_PENDING,
    "broadcast": tron_pb2.TRANSFER_STATUS_BROADCAST,
    "confirmed": tron_pb2.TRANSFER_STATUS_CONFIRMED,
    "partially_refunded": tron_pb2.TRANSFER_STATUS_CONFIRMED,
    "refunded": tron_pb2.TRANSFER_STATUS_CONFIRMED,
    "failed": tron_pb2.TRANSFER_STATUS_FAILED,
}
TRANSFER_STATUS_NAMES = {
    tron_pb2.TRANSFER_STATUS_PENDING: ["pending"],
    tron_pb2.TRANSFER_STATUS_BROADCAST: ["broadcast"],
    tron_pb2.TRANSFER_STATUS_CONFIRMED: ["confirmed", "partially_refunded", "refunded"],
    tron_pb2.TRANSFER_STATUS_FAILED: ["failed"],
}
PAYMENT_STATUS = {
    "pending": payments_pb2.PAYMENT_STATUS_PENDING,
    "broadcast": payments_pb2.PAYMENT_STATUS_BROADCAST,
    "confirmed": payments_pb2.PAYMENT_STATUS_CONFIRMED,
    "failed": payments_pb2.PAYMENT_STATUS_FAILED,
    "partially_refunded": payments_pb2.PAYMENT_STATUS_PARTIALLY_REFUNDED,
    "refunded": payments_pb2.PAYMENT_STATUS_REFUNDED,
}
PAYMENT_STATUS_NAMES = {v: k for k, v in PAYMENT_STATUS.items()}


def wallet_transaction(
    record: TransferRecord, head: int, required: int
) -> wallets_pb2.WalletTransaction:
    return wallets_pb2.WalletTransaction(
        transaction_id=record.transfer_id,
        wallet_id=record.wallet_id,
        type=record.tx_type,  # type: ignore[arg-type]
        currency=record.currency,  # type: ignore[arg-type]
        amount_micros=record.amount_micros,
        recipient_address=record.recipient,
        memo=record.memo,
        status=TRANSFER_STATUS[record.status],
        transaction=transaction(record.tx, head, required),
        idempotency_key=record.idempotency_key,
        error_message=record.error_message,
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
    )


def payment(record: TransferRecord, head: int, required: int) -> payments_pb2.Payment:
    return payments_pb2.Payment(
        payment_id=record.transfer_id,
        user_id=record.user_id,
        wallet_id=record.wallet_id,
        recipient_address=record.recipient,
        currency=record.currency,  # type: ignore[arg-type]
        amount_micros=record.amount_micros,
        refunded_amount_micros=record.refunded_micros,
        reference=record.reference,
        memo=record.memo,
        status=PAYMENT_STATUS[record.status],
        transaction=transaction(record.tx, head, required),
        webhook_url=record.webhook_url,
        idempotency_key=record.idempotency_key,
        error_message=record.error_message,
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
    )


def refund(record: TransferRecord, head: int, required: int) -> payments_pb2.Refund:
    return payments_pb2.Refund(
        refund_id=record.transfer_id,
        payment_id=record.payment_id,
        amount_micros=record.amount_micros,
        reason=record.reason,
        status=TRANSFER_STATUS[record.status],
        transaction=transaction(record.tx, head, required),
        created_by=record.created_by,
        create_time=timestamp(record.create_time),
    )


def verified_stake(stake: VerifiedStake) -> tron_pb2.VerifyStakeResponse:
    """VerifyStake's answer."""
    return tron_pb2.VerifyStakeResponse(
        tx_id=stake.tx_id,
        from_address=stake.from_address,
        stake_address=stake.stake_address,
        amount_micros=stake.amount_micros,
        block_number=stake.block_number,
        block_time=timestamp(stake.block_time_ms / 1000),
    )
