"""Wallet transactions, payments and refunds over mTLS gRPC against a real devnet process:
sent once per idempotency key, followed to 19 blocks, every bad request refused with
nothing stored; staking rewards as the network reports them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from lucid.common.v1 import access_pb2
from lucid.lib.clock import FakeClock
from lucid.payments import schema
from lucid.payments.app import PaymentsOptions
from lucid.payments.v1 import (
    payments_pb2,
    payments_pb2_grpc,
    tron_pb2,
    tron_pb2_grpc,
    wallets_pb2,
)
from lucid.runtime.config import Settings
from lucid.runtime.wire import timestamp
from tests.payments_support import TRX, USDT_UNIT, PaymentsBed, new_address, payments_bed, until
from tests.support import Mesh, bearer, details

W = wallets_pb2
P = payments_pb2


@pytest.fixture
async def bed(settings: Settings, mesh: Mesh, tmp_path: Path) -> AsyncIterator[PaymentsBed]:
    async with payments_bed(settings, mesh, tmp_path) as bed:
        yield bed


async def _user_wallet(
    bed: PaymentsBed, user: Any, currency: int = tron_pb2.CURRENCY_USDT, *, usdt: int, trx: int
) -> W.Wallet:
    created = await bed.wallet_stub("operator").CreateWallet(
        W.CreateWalletRequest(name="spending", currency=currency), metadata=user
    )
    if usdt or trx:
        await asyncio.to_thread(
            bed.devnet.admin,
            "fund",
            address=created.wallet.address,
            trx_sun=trx,
            usdt_micros=usdt,
        )
    return created.wallet


async def _trx_of(bed: PaymentsBed, address: str) -> int:
    def read() -> int:
        answer = bed.devnet.post("wallet/getaccount", address=address, visible=True)
        return int(answer.get("balance", 0))

    return await asyncio.to_thread(read)


async def _stored(bed: PaymentsBed) -> int:
    db = bed.server.runtime.datastores.db
    return int(await db[schema.TRANSFERS].count_documents({}))


async def test_a_usdt_wallet_transaction_is_sent_once_and_confirmed(
    bed: PaymentsBed, mesh: Mesh
) -> None:
    user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    wallet = await _user_wallet(bed, user, usdt=50 * USDT_UNIT, trx=100 * TRX)
    stub = bed.wallet_stub("operator")
    recipient = new_address()
    request = W.CreateWalletTransactionRequest(
        wallet_id=wallet.wallet_id,
        type=W.WALLET_TRANSACTION_TYPE_TRANSFER,
        amount_micros=7 * USDT_UNIT,
        recipient_address=recipient,
        currency=tron_pb2.CURRENCY_USDT,
        memo="rent",
        idempotency_key=str(uuid.uuid4()),
    )
    answers = await asyncio.gather(
        *(stub.CreateWalletTransaction(request, metadata=user) for _ in range(20))
    )
    ids = {a.transaction.transaction_id for a in answers}
    assert len(ids) == 1
    first = answers[0].transaction
    assert first.amount_micros == 7 * USDT_UNIT and first.memo == "rent"
    assert first.status in (tron_pb2.TRANSFER_STATUS_PENDING, tron_pb2.TRANSFER_STATUS_BROADCAST)
    await bed.mine()
    await bed.mine(19)
    get = W.GetWalletTransactionRequest(
        wallet_id=wallet.wallet_id, transaction_id=first.transaction_id
    )
    done = await until(
        lambda: stub.GetWalletTransaction(get, metadata=user),
        lambda r: r.transaction.status == tron_pb2.TRANSFER_STATUS_CONFIRMED,
    )
    tx = done.transaction.transaction
    assert len(tx.tx_hash) == 64 and tx.block_number > 0 and tx.confirmations >= 19
    assert tx.result == tron_pb2.TRON_TX_RESULT_SUCCESS and tx.energy_used > 0
    assert await bed.usdt_of(recipient) == 7 * USDT_UNIT  # paid once, not 20 times
    assert await bed.usdt_of(wallet.address) == 43 * USDT_UNIT
    again = await stub.CreateWalletTransaction(request, metadata=user)
    assert again.transaction.transaction_id == first.transaction_id
    assert again.transaction.status == tron_pb2.TRANSFER_STATUS_CONFIRMED

    listed = await stub.ListWalletTransactions(
        W.ListWalletTransactionsRequest(
            wallet_id=wallet.wallet_id, status=tron_pb2.TRANSFER_STATUS_CONFIRMED
        ),
        metadata=user,
    )
    assert [t.transaction_id for t in listed.transactions] == [first.transaction_id]
    pending = await stub.ListWalletTransactions(
        W.ListWalletTransactionsRequest(
            wallet_id=wallet.wallet_id, status=tron_pb2.TRANSFER_STATUS_PENDING
        ),
        metadata=user,
    )
    assert pending.total_size == 0

    changed = W.CreateWalletTransactionRequest()
    changed.CopyFrom(request)
    changed.amount_micros = 8 * USDT_UNIT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateWalletTransaction(changed, metadata=user)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    stranger = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetWalletTransaction(get, metadata=stranger)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert await _stored(bed) == 1


async def test_a_trx_wallet_transaction_moves_sun(bed: PaymentsBed, mesh: Mesh) -> None:
    user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    wallet = await _user_wallet(bed, user, tron_pb2.CURRENCY_TRX, usdt=0, trx=20 * TRX)
    recipient = new_address()
    created = await bed.wallet_stub("operator").CreateWalletTransaction(
        W.CreateWalletTransactionRequest(
            wallet_id=wallet.wallet_id,
            type=W.WALLET_TRANSACTION_TYPE_TRANSFER,
            amount_micros=3 * TRX,
            recipient_address=recipient,
            currency=tron_pb2.CURRENCY_TRX,
            idempotency_key="trx-1",
        ),
        metadata=user,
    )
    assert created.transaction.status == tron_pb2.TRANSFER_STATUS_BROADCAST
    await bed.mine()
    assert await _trx_of(bed, recipient) == 3 * TRX
    spent = 20 * TRX - await _trx_of(bed, wallet.address)
    assert spent >= 3 * TRX + 1 * TRX  # the amount and the 1 TRX account-creation fee

    await bed.mine(19)
    get = W.GetWalletTransactionRequest(
        wallet_id=wallet.wallet_id, transaction_id=created.transaction.transaction_id
    )
    await until(
        lambda: bed.wallet_stub("operator").GetWalletTransaction(get, metadata=user),
        lambda r: r.transaction.status == tron_pb2.TRANSFER_STATUS_CONFIRMED,
    )
    manager = bearer(await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN))
    payments = payments_pb2_grpc.PaymentServiceStub(bed.mesh.channel("payments", "operator"))
    period = P.ReconcilePaymentsRequest(
        start_time=timestamp(time.time() - 3600), end_time=timestamp(time.time() + 60)
    )
    clean = await payments.ReconcilePayments(period, metadata=manager)
    assert clean.checked_count == 1 and clean.matched_count == 1 and not clean.mismatches
    db = bed.server.runtime.datastores.db  # the record altered behind the cluster's back
    await db[schema.TRANSFERS].update_one(
        {"_id": created.transaction.transaction_id}, {"$set": {"amount_micros": 4 * TRX}}
    )
    altered = await payments.ReconcilePayments(period, metadata=manager)
    assert [(m.record_type, m.record_id, m.issue) for m in altered.mismatches] == [
        ("wallet_transaction", created.transaction.transaction_id, P.RECONCILIATION_ISSUE_MISMATCH)
    ]


async def test_bad_wallet_transactions_are_refused_and_store_nothing(
    bed: PaymentsBed, mesh: Mesh
) -> None:
    user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    stranger = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    wallet = await _user_wallet(bed, user, usdt=5 * USDT_UNIT, trx=100 * TRX)
    broke = await _user_wallet(bed, user, usdt=5 * USDT_UNIT, trx=0)
    stub = bed.wallet_stub("operator")

    def ask(**changes: Any) -> W.CreateWalletTransactionRequest:
        fields: dict[str, Any] = {
            "wallet_id": wallet.wallet_id,
            "type": W.WALLET_TRANSACTION_TYPE_TRANSFER,
            "amount_micros": USDT_UNIT,
            "recipient_address": new_address(),
            "currency": tron_pb2.CURRENCY_USDT,
            "idempotency_key": str(uuid.uuid4()),
        }
        return W.CreateWalletTransactionRequest(**{**fields, **changes})

    good = new_address()
    bad_checksum = good[:-1] + ("A" if good[-1] != "A" else "B")
    cases: list[tuple[W.CreateWalletTransactionRequest, Any, grpc.StatusCode, str]] = [
        (ask(wallet_id=str(uuid.uuid4())), user, grpc.StatusCode.NOT_FOUND, "4001"),
        (ask(), stranger, grpc.StatusCode.NOT_FOUND, "4001"),
        (ask(currency=tron_pb2.CURRENCY_TRX), user, grpc.StatusCode.INVALID_ARGUMENT, "1001"),
        (ask(recipient_address=wallet.address), user, grpc.StatusCode.INVALID_ARGUMENT, "1001"),
        (ask(amount_micros=6 * USDT_UNIT), user, grpc.StatusCode.FAILED_PRECONDITION, "4004"),
        (ask(wallet_id=broke.wallet_id), user, grpc.StatusCode.FAILED_PRECONDITION, "4004"),
        (ask(amount_micros=0), user, grpc.StatusCode.INVALID_ARGUMENT, ""),
        (ask(idempotency_key="no spaces"), user, grpc.StatusCode.INVALID_ARGUMENT, ""),
    ]
    cases.append(
        (ask(recipient_address=bad_checksum), user, grpc.StatusCode.INVALID_ARGUMENT, "1001")
    )
    for request, who, code, err in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateWalletTransaction(request, metadata=who)
        assert caught.value.code() == code, (request, caught.value.details())
        assert err in details(caught.value).reason, details(caught.value)
    await stub.UpdateWallet(
        W.UpdateWalletRequest(wallet_id=wallet.wallet_id, status=W.WALLET_STATUS_LOCKED),
        metadata=user,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateWalletTransaction(ask(), metadata=user)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await _stored(bed) == 0
    listed = await stub.ListWalletTransactions(
        W.ListWalletTransactionsRequest(wallet_id=wallet.wallet_id), metadata=user
    )
    assert listed.total_size == 0 and not listed.transactions


async def test_a_payment_is_confirmed_then_refunded_in_parts_never_beyond_it(
    bed: PaymentsBed, mesh: Mesh
) -> None:
    user_id = str(uuid.uuid4())
    user = bearer(await mesh.token(role=access_pb2.ROLE_USER, user_id=user_id))
    stranger = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    manager = bearer(await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN))
    wallet = await _user_wallet(bed, user, usdt=30 * USDT_UNIT, trx=100 * TRX)
    stub = payments_pb2_grpc.PaymentServiceStub(bed.mesh.channel("payments", "operator"))
    shop = new_address()
    pay = P.CreatePaymentRequest(
        wallet_id=wallet.wallet_id,
        recipient_address=shop,
        currency=tron_pb2.CURRENCY_USDT,
        amount_micros=10 * USDT_UNIT,
        reference="order-42",
        memo="a session",
        idempotency_key="order-42",
        webhook_url="https://127.0.0.1:9/hook",
    )
    created = (await stub.CreatePayment(pay, metadata=user)).payment
    assert created.user_id == user_id and created.reference == "order-42"
    assert created.status == P.PAYMENT_STATUS_BROADCAST
    assert (await stub.CreatePayment(pay, metadata=user)).payment.payment_id == created.payment_id

    def refund(amount: int, key: str) -> Any:
        return stub.RefundPayment(
            P.RefundPaymentRequest(
                payment_id=created.payment_id, amount_micros=amount, reason="test",
                idempotency_key=key,
            ),
            metadata=manager,
        )  # fmt: skip

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await refund(USDT_UNIT, "too-early")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await bed.mine(20)
    get = P.GetPaymentRequest(payment_id=created.payment_id)
    await until(
        lambda: stub.GetPayment(get, metadata=user),
        lambda r: r.payment.status == P.PAYMENT_STATUS_CONFIRMED,
    )
    assert await bed.usdt_of(shop) == 10 * USDT_UNIT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetPayment(get, metadata=stranger)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RefundPayment(
            P.RefundPaymentRequest(
                payment_id=created.payment_id, reason="mine", idempotency_key="by-the-payer"
            ),
            metadata=user,
        )  # a user cannot refund
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    mine = await stub.ListPayments(P.ListPaymentsRequest(reference="order-42"), metadata=user)
    assert [p.payment_id for p in mine.payments] == [created.payment_id]
    assert (await stub.ListPayments(P.ListPaymentsRequest(), metadata=stranger)).total_size == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListPayments(P.ListPaymentsRequest(user_id=user_id), metadata=stranger)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    part = await refund(3 * USDT_UNIT, "r1")
    assert part.payment.status == P.PAYMENT_STATUS_PARTIALLY_REFUNDED
    assert part.payment.refunded_amount_micros == 3 * USDT_UNIT
    assert (await refund(3 * USDT_UNIT, "r1")).refund.refund_id == part.refund.refund_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await refund(8 * USDT_UNIT, "r2")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    rest = await asyncio.gather(refund(0, "r3"), refund(0, "r4"), return_exceptions=True)
    won = [r for r in rest if not isinstance(r, BaseException)]
    assert len(won) >= 1
    assert won[0].payment.status == P.PAYMENT_STATUS_REFUNDED
    assert won[0].payment.refunded_amount_micros == 10 * USDT_UNIT
    for lost in rest:
        if isinstance(lost, grpc.aio.AioRpcError):
            assert lost.code() in (
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.INVALID_ARGUMENT,
            )
    await bed.mine(20)
    final = await until(
        lambda: stub.GetPayment(get, metadata=user),
        lambda r: all(x.status == tron_pb2.TRANSFER_STATUS_CONFIRMED for x in r.refunds),
    )
    assert final.payment.status == P.PAYMENT_STATUS_REFUNDED
    assert sum(r.amount_micros for r in final.refunds) == 10 * USDT_UNIT
    assert {r.refund_id for r in final.refunds} >= {part.refund.refund_id}
    assert await bed.usdt_of(wallet.address) == 30 * USDT_UNIT  # 30 - 10 + 3 + 7
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await refund(0, "r5")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_staking_rewards_come_from_the_network(bed: PaymentsBed, mesh: Mesh) -> None:
    user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    wallet = await _user_wallet(bed, user, usdt=0, trx=10 * TRX)
    stub = tron_pb2_grpc.StakingServiceStub(bed.mesh.channel("payments", "operator"))
    ask = tron_pb2.GetStakingRewardsRequest(wallet_id=wallet.wallet_id)
    before = await stub.GetStakingRewards(ask, metadata=user)
    assert before.address == wallet.address and before.claimable_amount_micros == 0
    await asyncio.to_thread(bed.devnet.admin, "reward", address=wallet.address, sun=1_234_567)
    after = await stub.GetStakingRewards(ask, metadata=user)
    assert after.claimable_amount_micros == 1_234_567
    assert not after.HasField("last_claim_time")
    stranger = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetStakingRewards(ask, metadata=stranger)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_user_past_the_staking_rate_limit_is_refused_with_a_retry_time(
    settings: Settings, mesh: Mesh, tmp_path: Path
) -> None:
    clock = FakeClock()  # still while the calls are made: exactly the allowance passes
    async with payments_bed(settings, mesh, tmp_path, clock=clock, usdt_micros=0) as bed:
        user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
        other = bearer(await mesh.token(role=access_pb2.ROLE_USER))
        clock.advance(max(0.0, time.time() - clock.timestamp()) + 1)  # past the tokens' iat
        stub = tron_pb2_grpc.StakingServiceStub(bed.mesh.channel("payments", "operator"))
        ask = tron_pb2.GetStakingRewardsRequest(wallet_id=str(uuid.uuid4()))

        async def outcome(who: Any) -> grpc.StatusCode:
            try:
                await stub.GetStakingRewards(ask, metadata=who)
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        for _ in range(100):  # 50 a minute and a burst of 50 more (spec 07 §5)
            assert await outcome(user) == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetStakingRewards(ask, metadata=user)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        refused = details(caught.value)
        assert "3001" in refused.reason and refused.retry_after_s is not None
        assert 0 < refused.retry_after_s <= 60
        assert await outcome(other) == grpc.StatusCode.NOT_FOUND  # counted per user
        listed = await bed.wallet_stub("operator").ListWallets(
            W.ListWalletsRequest(), metadata=user
        )
        assert listed.total_size == 0  # another group's allowance is untouched
        clock.advance(refused.retry_after_s)
        assert await outcome(user) == grpc.StatusCode.NOT_FOUND


async def test_a_transaction_the_node_never_admitted_is_signed_anew_once_expired(
    settings: Settings, mesh: Mesh, tmp_path: Path
) -> None:
    # Long enough to be broadcast under load; over before the node's 10 s client timeout.
    options = PaymentsOptions(tx_lifetime_s=8.0, expiry_margin_s=0.5)
    async with payments_bed(settings, mesh, tmp_path, options=options) as bed:
        user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
        wallet = await _user_wallet(bed, user, usdt=10 * USDT_UNIT, trx=100 * TRX)
        recipient = new_address()
        await asyncio.to_thread(bed.devnet.admin, "fail_next", hang_s=12)  # never admitted
        created = await bed.wallet_stub("operator").CreateWalletTransaction(
            W.CreateWalletTransactionRequest(
                wallet_id=wallet.wallet_id,
                type=W.WALLET_TRANSACTION_TYPE_TRANSFER,
                amount_micros=2 * USDT_UNIT,
                recipient_address=recipient,
                currency=tron_pb2.CURRENCY_USDT,
                idempotency_key="lost-1",
            ),
            metadata=user,
        )
        first = created.transaction
        assert first.status == tron_pb2.TRANSFER_STATUS_PENDING  # the outcome is unknown
        lost_txid = first.transaction.tx_hash
        assert len(lost_txid) == 64
        get = W.GetWalletTransactionRequest(
            wallet_id=wallet.wallet_id, transaction_id=first.transaction_id
        )
        sent = await until(
            lambda: bed.wallet_stub("operator").GetWalletTransaction(get, metadata=user),
            lambda r: r.transaction.status == tron_pb2.TRANSFER_STATUS_BROADCAST,
            timeout_s=60,
        )
        assert sent.transaction.transaction.tx_hash != lost_txid  # signed anew, once expired
        await bed.mine(20)
        await until(
            lambda: bed.wallet_stub("operator").GetWalletTransaction(get, metadata=user),
            lambda r: r.transaction.status == tron_pb2.TRANSFER_STATUS_CONFIRMED,
        )
        lost = await asyncio.to_thread(
            bed.devnet.post, "wallet/gettransactioninfobyid", value=lost_txid
        )
        assert lost == {}
        assert await bed.usdt_of(recipient) == 2 * USDT_UNIT
        doc = await bed.server.runtime.datastores.db[schema.TRANSFERS].find_one(
            {"_id": first.transaction_id}
        )
        assert doc is not None and doc["attempts"] >= 2  # each new one only after the last expired
