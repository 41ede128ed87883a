"""Payouts over gRPC against a real devnet: spec 07 §7 and the exactly-once guarantees."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from lucid.common.v1 import access_pb2
from lucid.lib.clock import FakeClock
from lucid.payments.app import PaymentsOptions
from lucid.payments.servicers.payouts import PayoutServiceServicer
from lucid.payments.v1 import payments_pb2, payments_pb2_grpc, payouts_pb2, tron_pb2
from lucid.runtime.config import Settings
from lucid.runtime.wire import timestamp
from tests.payments_support import (
    USDT_UNIT,
    PaymentsBed,
    new_address,
    payments_bed,
    until,
)
from tests.support import Mesh, bearer, details
from tests.waiting import eventually

S = payouts_pb2


@pytest.fixture
async def bed(settings: Settings, mesh: Mesh, tmp_path: Path) -> AsyncIterator[PaymentsBed]:
    async with payments_bed(settings, mesh, tmp_path) as bed:
        yield bed


async def test_a_v0_payout_is_paid_and_confirmed_after_19_blocks(bed: PaymentsBed) -> None:
    recipient = new_address()
    created = await bed.create(recipient_address=recipient, amount_micros=5_500_000)
    assert created.status == S.PAYOUT_STATUS_PENDING
    assert created.router_type == S.ROUTER_TYPE_V0
    sent = await bed.until_status(created.payout_id, S.PAYOUT_STATUS_BROADCAST)
    assert len(sent.transaction.tx_hash) == 64
    await bed.mine()
    assert await bed.usdt_of(recipient) == 5_500_000
    await bed.mine(18)
    still = await bed.payout(created.payout_id)
    assert still.status == S.PAYOUT_STATUS_BROADCAST  # mined, not yet solid
    await bed.mine(1)
    done = await bed.until_status(created.payout_id, S.PAYOUT_STATUS_CONFIRMED)
    assert done.transaction.fee_amount_micros > 0
    assert done.transaction.result == tron_pb2.TRON_TX_RESULT_SUCCESS
    assert done.transaction.confirmations >= 19
    assert done.HasField("confirm_time")
    assert await bed.usdt_of(recipient) == 5_500_000


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("T" + "1" * 34, "35 characters"),
        ("T" + "0" * 33, "a non-base58 character"),
        ("TJRabPrwbZy45sbavfcjinPJC18kjpRTv9", "a bad checksum"),
    ],
)
async def test_a_bad_address_is_refused_and_nothing_stored(
    bed: PaymentsBed, address: str, why: str
) -> None:
    key = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bed.create(key, recipient_address=address)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, why
    listed = await bed.stub().ListPayouts(S.ListPayoutsRequest())
    assert listed.total_size == 0


@pytest.mark.parametrize("amount", [5_000, 10_000_010_000, 1_234_000])
async def test_amounts_outside_the_rules_are_refused(bed: PaymentsBed, amount: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bed.create(amount_micros=amount)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_smallest_and_largest_amounts_pass_validation(bed: PaymentsBed) -> None:
    assert (await bed.create(amount_micros=10_000)).amount_micros == 10_000
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # valid, but above the V0 cap
        await bed.create(amount_micros=10_000 * USDT_UNIT)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(caught.value).reason == "LUCID_ERR_3002"


async def test_100_concurrent_requests_with_one_key_pay_once(bed: PaymentsBed) -> None:
    recipient = new_address()
    request = S.CreatePayoutRequest(
        idempotency_key="node-payout-" + uuid.uuid4().hex,
        recipient_address=recipient,
        amount_micros=2 * USDT_UNIT,
        reason="monthly work credits",
    )
    stub = bed.stub()
    answers = await asyncio.gather(*(stub.CreatePayout(request) for _ in range(100)))
    assert len({a.payout.payout_id for a in answers}) == 1
    assert len({a.payout.create_time.ToNanoseconds() for a in answers}) == 1
    assert sum(not a.replayed for a in answers) == 1
    payout_id = answers[0].payout.payout_id
    await bed.until_status(payout_id, S.PAYOUT_STATUS_BROADCAST)
    await bed.mine(20)
    await bed.until_status(payout_id, S.PAYOUT_STATUS_CONFIRMED)
    again = await stub.CreatePayout(request)
    assert again.replayed and again.payout.payout_id == payout_id
    assert await bed.usdt_of(recipient) == 2 * USDT_UNIT
    listed = await stub.ListPayouts(S.ListPayoutsRequest(recipient_address=recipient))
    assert listed.total_size == 1


async def test_a_key_reused_for_another_payout_is_refused(bed: PaymentsBed) -> None:
    key = str(uuid.uuid4())
    first = await bed.create(key, amount_micros=USDT_UNIT)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bed.create(key, amount_micros=2 * USDT_UNIT)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details(caught.value).metadata["payout_id"] == first.payout_id


async def test_a_lost_broadcast_answer_is_resolved_by_txid_not_paid_twice(
    bed: PaymentsBed,
) -> None:
    await asyncio.to_thread(bed.devnet.admin, "fail_next", lost_response=True, count=3)
    recipient = new_address()
    created = await bed.create(recipient_address=recipient, amount_micros=3 * USDT_UNIT)
    sent = await bed.until_status(created.payout_id, S.PAYOUT_STATUS_BROADCAST)
    await bed.mine(20)
    done = await bed.until_status(created.payout_id, S.PAYOUT_STATUS_CONFIRMED)
    assert done.transaction.tx_hash == sent.transaction.tx_hash  # the first transaction
    assert await bed.usdt_of(recipient) == 3 * USDT_UNIT


async def test_the_devnet_killed_mid_batch_loses_nothing_and_pays_nothing_twice(
    bed: PaymentsBed, mesh: Mesh
) -> None:
    recipients = [new_address() for _ in range(3)]
    created = [await bed.create(recipient_address=r, amount_micros=USDT_UNIT) for r in recipients]
    for payout in created:
        await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_BROADCAST)
    await asyncio.to_thread(bed.devnet.kill)  # the pool (all three transfers) is lost
    await asyncio.to_thread(bed.devnet.start)
    # The worker finds its transactions unknown and broadcasts the same bytes again.
    await bed.mine()
    for recipient in recipients:
        await _eventually_balance(bed, recipient, USDT_UNIT)
    await bed.mine(20)
    for payout in created:
        await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_CONFIRMED)
    for recipient in recipients:
        assert await bed.usdt_of(recipient) == USDT_UNIT
    payments = payments_pb2_grpc.PaymentServiceStub(bed.mesh.channel("payments", "operator"))
    admin = bearer(await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN))
    now = time.time()
    report = await payments.ReconcilePayments(
        payments_pb2.ReconcilePaymentsRequest(
            start_time=timestamp(now - 3600), end_time=timestamp(now + 60)
        ),
        metadata=admin,
    )
    assert report.checked_count == 3 and report.matched_count == 3 and not report.mismatches


async def _eventually_balance(bed: PaymentsBed, address: str, amount: int) -> None:
    """Mines until ``address`` holds ``amount`` (the shared ``eventually``)."""

    async def reached() -> bool:
        if await bed.usdt_of(address) == amount:
            return True
        await bed.mine()
        return False

    await eventually(reached, timeout_s=30, what=f"{address} holding {amount}")


async def test_an_empty_hot_wallet_refuses_before_storing(
    settings: Settings, mesh: Mesh, tmp_path: Path
) -> None:
    async with payments_bed(settings, mesh, tmp_path, usdt_micros=0) as bed:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await bed.create(amount_micros=USDT_UNIT)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert details(caught.value).reason == "LUCID_ERR_4004"
        listed = await bed.stub().ListPayouts(S.ListPayoutsRequest())
        assert listed.total_size == 0


async def test_a_fee_limit_below_the_energy_burn_fails_out_of_energy(
    settings: Settings, mesh: Mesh, tmp_path: Path
) -> None:
    async with payments_bed(settings, mesh, tmp_path, tron_fee_limit_sun=10_000_000) as bed:
        recipient = new_address()
        created = await bed.create(recipient_address=recipient)
        await bed.until_status(created.payout_id, S.PAYOUT_STATUS_BROADCAST)
        await bed.mine()
        failed = await bed.until_status(created.payout_id, S.PAYOUT_STATUS_FAILED)
        assert "OUT_OF_ENERGY" in failed.error_message
        assert failed.transaction.result == tron_pb2.TRON_TX_RESULT_OUT_OF_ENERGY
        assert failed.retry_count == 0
        assert await bed.usdt_of(recipient) == 0


async def test_cancel_only_while_pending(bed: PaymentsBed) -> None:
    held = await bed.create(batch_type=S.BATCH_TYPE_WEEKLY)
    stub = bed.stub("admin")
    first = await stub.CancelPayout(S.CancelPayoutRequest(payout_id=held.payout_id, reason="x"))
    assert first.cancelled and first.payout.status == S.PAYOUT_STATUS_CANCELLED
    again = await stub.CancelPayout(S.CancelPayoutRequest(payout_id=held.payout_id))
    assert again.cancelled
    sent = await bed.create()
    await bed.until_status(sent.payout_id, S.PAYOUT_STATUS_BROADCAST)
    late = await stub.CancelPayout(S.CancelPayoutRequest(payout_id=sent.payout_id))
    assert not late.cancelled and late.payout.status == S.PAYOUT_STATUS_BROADCAST


async def test_the_chain_plane_may_not_call_payments(bed: PaymentsBed) -> None:
    request = S.CreatePayoutRequest(
        idempotency_key=str(uuid.uuid4()),
        recipient_address=new_address(),
        amount_micros=USDT_UNIT,
        reason="from the chain",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bed.stub("blockchain").CreatePayout(request)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(caught.value).reason == "LUCID_ERR_2013"
    listed = await bed.stub().ListPayouts(S.ListPayoutsRequest())
    assert listed.total_size == 0


@pytest.fixture
async def quick_bed(settings: Settings, mesh: Mesh, tmp_path: Path) -> AsyncIterator[PaymentsBed]:
    """Transactions valid for 3 s, so the expiry paths run in test time."""
    options = PaymentsOptions(tx_lifetime_s=3.0, expiry_margin_s=0.5)
    async with payments_bed(settings, mesh, tmp_path, options=options) as bed:
        yield bed


def _servicer(bed: PaymentsBed) -> PayoutServiceServicer:
    return next(s for _, s in bed.server.app.servicers if isinstance(s, PayoutServiceServicer))


async def _audit(bed: PaymentsBed, payout_id: str) -> list[str]:
    audit = _servicer(bed).payouts.audit
    return [e["action"] for e in await audit.events(payout_id)]


async def test_a_transaction_lost_with_the_node_is_re_signed_only_after_it_expired(
    quick_bed: PaymentsBed,
) -> None:
    bed = quick_bed
    await asyncio.to_thread(bed.devnet.admin, "fail_next", lost_response=True)
    recipient = new_address()
    created = await bed.create(recipient_address=recipient, amount_micros=USDT_UNIT)
    first = await until(
        lambda: bed.payout(created.payout_id), lambda p: bool(p.transaction.tx_hash)
    )
    await asyncio.to_thread(bed.devnet.kill)  # admitted, then lost with the pool
    record = await _servicer(bed).payouts.store.get(created.payout_id)
    assert record is not None and record.tx is not None
    expiry_s = record.tx.expiration_ms / 1000

    async def now() -> float:
        return time.time()

    await until(now, lambda t: t > expiry_s)  # the devnet stays down past the expiry
    await asyncio.to_thread(bed.devnet.start)
    resent = await until(
        lambda: bed.payout(created.payout_id),
        lambda p: p.transaction.tx_hash not in ("", first.transaction.tx_hash),
    )
    await bed.mine(20)
    done = await bed.until_status(created.payout_id, S.PAYOUT_STATUS_CONFIRMED)
    assert done.transaction.tx_hash == resent.transaction.tx_hash
    assert await bed.usdt_of(recipient) == USDT_UNIT
    info = await asyncio.to_thread(
        bed.devnet.post, "wallet/gettransactioninfobyid", value=first.transaction.tx_hash
    )
    assert info == {}  # the first one never made it, and never can
    assert (await _audit(bed, created.payout_id)).count("payout.signed") == 2


async def test_a_stale_reference_block_is_re_signed_and_a_bad_signature_fails(
    quick_bed: PaymentsBed,
) -> None:
    bed = quick_bed
    await asyncio.to_thread(bed.devnet.admin, "fail_next", code="TAPOS_ERROR", count=2)
    recipient = new_address()
    stale = await bed.create(recipient_address=recipient, amount_micros=USDT_UNIT)
    await bed.until_status(stale.payout_id, S.PAYOUT_STATUS_BROADCAST, timeout_s=60)
    await bed.mine(20)
    await bed.until_status(stale.payout_id, S.PAYOUT_STATUS_CONFIRMED)
    assert await bed.usdt_of(recipient) == USDT_UNIT

    await asyncio.to_thread(bed.devnet.admin, "fail_next", code="SIGERROR", count=100)
    refused = await bed.create(amount_micros=USDT_UNIT)
    failed = await bed.until_status(refused.payout_id, S.PAYOUT_STATUS_FAILED, timeout_s=60)
    assert failed.error_message.startswith("SIGERROR")

    async def failure_audited() -> bool:  # recorded just after the status moved
        return "payout.failed" in await _audit(bed, refused.payout_id)

    await eventually(failure_audited, what="the payout's failure audited")


async def test_a_weekly_payout_waits_for_its_week_then_is_paid_once(
    settings: Settings, mesh: Mesh, tmp_path: Path
) -> None:
    """The scheduler: a WEEKLY payout stays pending (while immediate ones are sent) until
    the injectable clock is 5 minutes before its estimated completion, then it is paid."""
    week = timedelta(days=7)
    clock = FakeClock(datetime.now(UTC) - week)
    async with payments_bed(settings, mesh, tmp_path, clock=clock) as bed:
        recipient = new_address()
        weekly = await bed.create(
            recipient_address=recipient, amount_micros=3 * USDT_UNIT, batch_type=S.BATCH_TYPE_WEEKLY
        )
        eta = weekly.estimated_completion_time.ToDatetime(UTC)
        assert abs(eta - clock.now() - week) < timedelta(milliseconds=1)
        immediate = await bed.create()
        await bed.until_status(immediate.payout_id, S.PAYOUT_STATUS_BROADCAST)
        clock.advance(week - timedelta(seconds=301))
        later = await bed.create()
        await bed.until_status(later.payout_id, S.PAYOUT_STATUS_BROADCAST)
        assert (await bed.payout(weekly.payout_id)).status == S.PAYOUT_STATUS_PENDING
        clock.advance(2)
        await bed.until_status(weekly.payout_id, S.PAYOUT_STATUS_BROADCAST)
        await bed.mine(20)
        await bed.until_status(weekly.payout_id, S.PAYOUT_STATUS_CONFIRMED)
        assert await bed.usdt_of(recipient) == 3 * USDT_UNIT


async def test_a_try_that_sent_nothing_is_retried_after_a_backoff_then_paid_once(
    settings: Settings, mesh: Mesh, tmp_path: Path
) -> None:
    """A scheduled payout comes due while the hot wallet holds too little USDT: nothing is
    signed, it goes back to pending with the reason and is not tried again before its
    backoff (30 s on the injectable clock); after a top-up and the backoff it is paid."""
    clock = FakeClock(datetime.now(UTC) - timedelta(hours=1))
    async with payments_bed(settings, mesh, tmp_path, clock=clock, usdt_micros=USDT_UNIT) as bed:
        recipient = new_address()
        hourly = await bed.create(
            recipient_address=recipient, amount_micros=3 * USDT_UNIT, batch_type=S.BATCH_TYPE_HOURLY
        )
        clock.advance(timedelta(hours=1))
        waiting = await until(
            lambda: bed.payout(hourly.payout_id),
            lambda p: p.status == S.PAYOUT_STATUS_PENDING and p.retry_count == 1,
        )
        assert "insufficient USDT" in waiting.error_message
        await asyncio.to_thread(
            bed.devnet.admin, "fund", address=bed.hot_address, trx_sun=0, usdt_micros=5 * USDT_UNIT
        )
        clock.advance(29)
        other = await bed.create(amount_micros=USDT_UNIT)  # a pass of the worker after the top-up
        await bed.until_status(other.payout_id, S.PAYOUT_STATUS_BROADCAST)
        assert (await bed.payout(hourly.payout_id)).status == S.PAYOUT_STATUS_PENDING
        clock.advance(2)
        await bed.until_status(hourly.payout_id, S.PAYOUT_STATUS_BROADCAST)
        await bed.mine(20)
        paid = await bed.until_status(hourly.payout_id, S.PAYOUT_STATUS_CONFIRMED)
        assert paid.retry_count == 1
        assert await bed.usdt_of(recipient) == 3 * USDT_UNIT
