"""Operating payouts and wallets over gRPC: limits, freeze, retry, stats, health,
network and USDT reads, wallets whose keys never leave the seal."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from tronpy.keys import PrivateKey

from lucid.common.v1 import access_pb2
from lucid.lib.sealing import Sealer, SealError
from lucid.payments import schema
from lucid.payments.app import PAYOUT_KEY_FILE, PaymentsOptions
from lucid.payments.servicers.payouts import PayoutServiceServicer
from lucid.payments.v1 import (
    payments_pb2,
    payments_pb2_grpc,
    payouts_pb2,
    tron_pb2,
    tron_pb2_grpc,
    wallets_pb2,
)
from lucid.payments.wallets import HOT_WALLET_ID
from lucid.runtime.config import Settings
from lucid.runtime.wire import timestamp
from lucid.supervisor.devnet import dev_node_addresses, devnet_argv, ensure_payout_key
from tests.payments_support import USDT_UNIT, PaymentsBed, new_address, payments_bed, until
from tests.support import Mesh, bearer, details

S = payouts_pb2


@pytest.fixture
async def bed(settings: Settings, mesh: Mesh, tmp_path: Path) -> AsyncIterator[PaymentsBed]:
    async with payments_bed(settings, mesh, tmp_path) as bed:
        yield bed


async def test_the_hourly_cap_stops_payouts_after_1000_usdt(bed: PaymentsBed) -> None:
    for _ in range(2):
        await bed.create(amount_micros=500 * USDT_UNIT, batch_type=S.BATCH_TYPE_DAILY)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bed.create(amount_micros=10_000, batch_type=S.BATCH_TYPE_DAILY)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(caught.value).metadata["limit"] == "hourly"
    status = await bed.stub("admin").GetBreakerStatus(S.GetBreakerStatusRequest())
    assert status.hourly_used_amount_micros == 1_000 * USDT_UNIT
    assert status.hourly_remaining_amount_micros == 0
    assert status.limits.v0_max_amount_micros == 1_000 * USDT_UNIT
    assert status.state == S.BREAKER_STATE_CLOSED


async def test_a_freeze_holds_payouts_pending_until_released(bed: PaymentsBed) -> None:
    admin = bed.stub("admin")
    frozen = await admin.SetPayoutFreeze(S.SetPayoutFreezeRequest(frozen=True, reason="drill"))
    assert frozen.frozen
    held = await bed.create()
    await bed.mine()
    assert (await bed.payout(held.payout_id)).status == S.PAYOUT_STATUS_PENDING
    status = await admin.GetBreakerStatus(S.GetBreakerStatusRequest())
    assert status.frozen
    await admin.SetPayoutFreeze(S.SetPayoutFreezeRequest(frozen=False, reason="drill over"))
    await bed.until_status(held.payout_id, S.PAYOUT_STATUS_BROADCAST)


async def test_a_failed_payout_is_retried_at_most_three_times(
    settings: Settings, mesh: Mesh, tmp_path: Path
) -> None:
    async with payments_bed(settings, mesh, tmp_path, tron_fee_limit_sun=10_000_000) as bed:
        admin = bed.stub("admin")
        created = await bed.create()
        for attempt in range(4):
            await bed.until_status(created.payout_id, S.PAYOUT_STATUS_BROADCAST)
            await bed.mine()
            failed = await bed.until_status(created.payout_id, S.PAYOUT_STATUS_FAILED)
            assert failed.retry_count == attempt
            if attempt == 3:
                break
            retried = await admin.RetryPayout(S.RetryPayoutRequest(payout_id=created.payout_id))
            assert retried.payout.retry_count == attempt + 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin.RetryPayout(S.RetryPayoutRequest(payout_id=created.payout_id))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        stats = await admin.GetPayoutStats(S.GetPayoutStatsRequest())
        assert stats.total_count == 1 and stats.success_rate == 0.0
        assert stats.fee_amount_micros > 0


async def test_stats_health_network_and_usdt_reads(bed: PaymentsBed) -> None:
    recipient = new_address()
    created = await bed.create(recipient_address=recipient, amount_micros=2 * USDT_UNIT)
    await bed.until_status(created.payout_id, S.PAYOUT_STATUS_BROADCAST)
    await bed.mine(20)
    await bed.until_status(created.payout_id, S.PAYOUT_STATUS_CONFIRMED)
    admin = bed.stub("admin")
    stats = await admin.GetPayoutStats(S.GetPayoutStatsRequest())
    assert stats.total_count == 1 and stats.success_rate == 1.0
    assert stats.confirmed_amount_micros == 2 * USDT_UNIT
    health = await bed.stub("operator").GetHealth(S.GetHealthRequest())
    assert health.status == S.HEALTH_STATUS_HEALTHY, health
    assert {d.name for d in health.dependencies} >= {"mongodb", "tron", "hot_wallet"}

    channel = bed.mesh.channel("payments", "admin")
    network = tron_pb2_grpc.TronNetworkServiceStub(channel)
    info = await network.GetNetworkInfo(tron_pb2.GetNetworkInfoRequest())
    assert info.network == tron_pb2.TRON_NETWORK_LOCAL and info.energy_fee_sun == 420
    assert info.payout_wallet_address == bed.hot_address
    status = await network.GetNetworkStatus(tron_pb2.GetNetworkStatusRequest())
    assert status.connected and status.latest_block_number >= 21
    assert status.solidified_block_number == status.latest_block_number - 19
    usdt = tron_pb2_grpc.UsdtServiceStub(channel)
    balance = await usdt.GetUsdtBalance(tron_pb2.GetUsdtBalanceRequest(address=recipient))
    assert balance.amount_micros == 2 * USDT_UNIT
    allowance = await usdt.GetUsdtAllowance(
        tron_pb2.GetUsdtAllowanceRequest(owner_address=bed.hot_address, spender_address=recipient)
    )
    assert allowance.allowance_micros == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await usdt.GetUsdtBalance(
            tron_pb2.GetUsdtBalanceRequest(address="TJRabPrwbZy45sbavfcjinPJC18kjpRTv9")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_wallet_keys_are_sealed_and_never_returned(
    bed: PaymentsBed, settings: Settings, mesh: Mesh
) -> None:
    user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    stub = bed.wallet_stub("operator")
    created = await stub.CreateWallet(
        wallets_pb2.CreateWalletRequest(name="ops float", currency=tron_pb2.CURRENCY_USDT),
        metadata=user,
    )
    wallet = created.wallet
    assert wallet.wallet_type == wallets_pb2.WALLET_TYPE_HOT and wallet.address.startswith("T")
    store = next(
        s for _, s in bed.server.app.servicers if hasattr(s, "wallets") and hasattr(s, "network")
    ).wallets.store
    record = await store.find({"_id": wallet.wallet_id})
    assert record is not None and record.sealed_key.startswith(b"LSEAL1")
    key = PrivateKey(Sealer(settings.key_passphrase).unseal(record.sealed_key))
    assert key.public_key.to_base58check_address() == wallet.address
    assert key.to_bytes() not in record.sealed_key
    with pytest.raises(SealError):
        Sealer("a wrong passphrase").unseal(record.sealed_key)
    for response in (
        created,
        await stub.GetWallet(
            wallets_pb2.GetWalletRequest(wallet_id=wallet.wallet_id), metadata=user
        ),
        await stub.ListWallets(wallets_pb2.ListWalletsRequest(), metadata=user),
    ):
        raw = response.SerializeToString()
        assert key.to_bytes() not in raw and key.hex().encode() not in raw
    balance = await bed.wallet_stub("admin").GetWalletBalance(
        wallets_pb2.GetWalletBalanceRequest(wallet_id=HOT_WALLET_ID)
    )
    assert balance.usdt_amount_micros == 100_000 * USDT_UNIT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateWallet(
            wallets_pb2.CreateWalletRequest(
                name="watch",
                currency=tron_pb2.CURRENCY_USDT,
                wallet_type=wallets_pb2.WALLET_TYPE_COLD,
                address="TJRabPrwbZy45sbavfcjinPJC18kjpRTv9",
            ),
            metadata=user,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert schema.WALLETS == "payments_wallets"


def test_lucid_up_funds_the_payout_wallet_and_the_dev_agents_at_genesis(
    settings: Settings, tmp_path: Path
) -> None:
    local = settings.replace(var_dir=tmp_path, devnet_tron_port=0)
    address = ensure_payout_key(local)
    assert ensure_payout_key(local) == address  # made once
    sealed = (local.secrets_dir / PAYOUT_KEY_FILE).read_bytes()
    assert sealed.startswith(b"LSEAL1")
    argv = devnet_argv(local)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        port_file = tmp_path / "devnet" / "tron" / "port"

        async def port() -> bool:
            return port_file.exists()

        asyncio.run(until(port, bool))
        from tests.devnet_support import Devnet

        net = Devnet(tmp_path / "devnet" / "tron")
        net.port = int(port_file.read_text())
        contract = net.client().get_contract(local.tron_usdt_contract)
        assert contract.functions.balanceOf(address) > 0
        assert net.client().get_account_balance(address) > 0
        agents = dev_node_addresses(local)  # the dev agents' keys, made before the genesis
        assert len(set(agents)) == 3
        for agent in agents:  # each can pay its 100 USDT stake and the fee
            assert contract.functions.balanceOf(agent) >= 100 * 1_000_000
            assert net.client().get_account_balance(agent) >= 100
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert argv[0] == sys.executable


def _items(n: int, amount: int) -> list[payouts_pb2.PayoutBatchItem]:
    return [
        S.PayoutBatchItem(
            idempotency_key=str(uuid.uuid4()),
            recipient_address=new_address(),
            amount_micros=amount,
            reason="monthly run",
        )
        for _ in range(n)
    ]


async def test_a_batch_cut_off_before_its_payouts_is_completed_by_a_retry_or_a_restart(
    bed: PaymentsBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer dies between the batch record and its payouts (here: storing them raises):
    nothing is sent then; a retry with the key, or the start of the server
    (``recover_batches``), stores them from the batch's copy, and each is paid once."""
    payouts = next(
        s for _, s in bed.server.app.servicers if isinstance(s, PayoutServiceServicer)
    ).payouts

    async def dies(records: object) -> None:
        raise RuntimeError("the process died here")

    stub = bed.stub()
    retried = S.CreatePayoutBatchRequest(idempotency_key=str(uuid.uuid4()), items=_items(2, 10_000))
    restarted = S.CreatePayoutBatchRequest(
        idempotency_key=str(uuid.uuid4()), items=_items(2, 20_000)
    )
    monkeypatch.setattr(payouts.store, "insert_many", dies)
    for request in (retried, restarted):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.CreatePayoutBatch(request)
    monkeypatch.undo()
    recipients = [i.recipient_address for r in (retried, restarted) for i in r.items]
    for recipient in recipients:
        listed = await stub.ListPayouts(S.ListPayoutsRequest(recipient_address=recipient))
        assert listed.total_size == 0

    again = await stub.CreatePayoutBatch(retried)
    assert again.replayed and [p.recipient_address for p in again.payouts] == recipients[:2]
    assert await payouts.recover_batches() == 2  # what the server does when it starts
    assert await payouts.recover_batches() == 0
    recovered = []
    for recipient in recipients[2:]:
        listed = await stub.ListPayouts(S.ListPayoutsRequest(recipient_address=recipient))
        assert listed.total_size == 1
        recovered.append(listed.payouts[0])
    for payout in [*again.payouts, *recovered]:
        await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_BROADCAST)
    await bed.mine(20)
    for payout in [*again.payouts, *recovered]:
        await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_CONFIRMED)
        assert await bed.usdt_of(payout.recipient_address) == payout.amount_micros


async def test_an_immediate_batch_is_paid_whole_and_replayed_by_key(bed: PaymentsBed) -> None:
    stub = bed.stub()
    request = S.CreatePayoutBatchRequest(
        idempotency_key=str(uuid.uuid4()), items=_items(3, 2 * USDT_UNIT)
    )
    created = await stub.CreatePayoutBatch(request)
    assert not created.replayed and created.batch.payout_count == 3
    assert created.batch.total_amount_micros == 6 * USDT_UNIT
    again = await stub.CreatePayoutBatch(request)
    assert again.replayed and again.batch.batch_id == created.batch.batch_id
    for payout in created.payouts:
        await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_BROADCAST)
    await bed.mine(20)
    for payout in created.payouts:
        await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_CONFIRMED)
        assert await bed.usdt_of(payout.recipient_address) == 2 * USDT_UNIT
    got = await stub.GetPayoutBatch(S.GetPayoutBatchRequest(batch_id=created.batch.batch_id))
    assert got.batch.status == S.PAYOUT_BATCH_STATUS_COMPLETED


async def test_a_batch_too_big_or_over_the_limit_pays_nothing(bed: PaymentsBed) -> None:
    stub = bed.stub()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreatePayoutBatch(
            S.CreatePayoutBatchRequest(idempotency_key="b101", items=_items(101, 10_000))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    over = _items(3, 400 * USDT_UNIT)  # 1,200 USDT: above the hourly 1,000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreatePayoutBatch(S.CreatePayoutBatchRequest(idempotency_key="b3", items=over))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    listed = await stub.ListPayouts(S.ListPayoutsRequest())
    assert listed.total_size == 0
    await bed.mine()
    for item in over:
        assert await bed.usdt_of(item.recipient_address) == 0


async def test_reconciliation_checks_records_against_the_chain(
    bed: PaymentsBed, mesh: Mesh
) -> None:
    paid = await bed.create(amount_micros=3 * USDT_UNIT)
    doctored = await bed.create(amount_micros=4 * USDT_UNIT)
    for payout in (paid, doctored):
        await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_BROADCAST)
    await bed.mine(20)
    for payout in (paid, doctored):
        await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_CONFIRMED)
    in_flight = await bed.create(amount_micros=USDT_UNIT)
    await bed.until_status(in_flight.payout_id, S.PAYOUT_STATUS_BROADCAST)
    store = next(
        s for _, s in bed.server.app.servicers if isinstance(s, PayoutServiceServicer)
    ).payouts.store
    await store.collection.update_one(
        {"_id": doctored.payout_id}, {"$set": {"amount_micros": 40 * USDT_UNIT}}
    )
    payments = payments_pb2_grpc.PaymentServiceStub(bed.mesh.channel("payments", "operator"))
    admin = bearer(await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN))
    now = time.time()
    request = payments_pb2.ReconcilePaymentsRequest(
        start_time=timestamp(now - 3600), end_time=timestamp(now + 60)
    )
    report = await payments.ReconcilePayments(request, metadata=admin)
    assert report.checked_count == 3 and report.matched_count == 1
    issues = {m.record_id: m.issue for m in report.mismatches}
    assert issues == {
        doctored.payout_id: payments_pb2.RECONCILIATION_ISSUE_MISMATCH,
        in_flight.payout_id: payments_pb2.RECONCILIATION_ISSUE_UNCONFIRMED,
    }
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await payments.ReconcilePayments(
            payments_pb2.ReconcilePaymentsRequest(
                start_time=timestamp(now), end_time=timestamp(now - 1)
            ),
            metadata=admin,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_five_tron_failures_open_the_breaker_three_trials_close_it(
    settings: Settings, mesh: Mesh, tmp_path: Path
) -> None:
    options = PaymentsOptions(breaker_open_s=5.0)
    async with payments_bed(settings, mesh, tmp_path, options=options) as bed:
        admin = bed.stub("admin")
        # Every answer of the node is lost (its re-broadcasts too) until the faults clear.
        await asyncio.to_thread(bed.devnet.admin, "fail_next", lost_response=True, count=10_000)
        lost = [await bed.create() for _ in range(5)]

        async def state() -> int:
            status = await admin.GetBreakerStatus(S.GetBreakerStatusRequest())
            return status.state

        await until(state, lambda s: s == S.BREAKER_STATE_OPEN)
        opened = await admin.GetBreakerStatus(S.GetBreakerStatusRequest())
        assert opened.HasField("next_attempt_time") and opened.failure_count == 5
        await asyncio.to_thread(bed.devnet.admin, "fail_next", clear=True)
        # Once open for 5 s it lets 3 trial sends through; they succeed and close it.
        trials = [await bed.create() for _ in range(3)]
        await until(state, lambda s: s == S.BREAKER_STATE_CLOSED)
        for payout in lost + trials:  # the lost answers were resolved by txID meanwhile
            await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_BROADCAST)
        await bed.mine()
        for payout in lost + trials:
            assert await bed.usdt_of(payout.recipient_address) == USDT_UNIT
        await bed.mine(19)  # confirmed, so they leave the 10 in-flight slots
        for payout in lost + trials:
            await bed.until_status(payout.payout_id, S.PAYOUT_STATUS_CONFIRMED)
        await asyncio.to_thread(bed.devnet.admin, "fail_next", lost_response=True, count=10_000)
        for _ in range(5):
            await bed.create()
        await until(state, lambda s: s == S.BREAKER_STATE_OPEN)
        await asyncio.to_thread(bed.devnet.admin, "fail_next", clear=True)
        reset = await admin.ResetBreaker(S.ResetBreakerRequest(reason="node replaced"))
        assert reset.state == S.BREAKER_STATE_CLOSED
        assert await state() == S.BREAKER_STATE_CLOSED


async def test_an_admin_raises_the_hourly_cap_and_it_is_kept(bed: PaymentsBed) -> None:
    admin = bed.stub("admin")
    updated = await admin.UpdatePayoutLimits(
        S.UpdatePayoutLimitsRequest(
            hourly_limit_amount_micros=2_000 * USDT_UNIT, reason="month end"
        )
    )
    assert updated.limits.hourly_limit_amount_micros == 2_000 * USDT_UNIT
    assert updated.limits.daily_limit_amount_micros == 10_000 * USDT_UNIT  # zero: unchanged
    for _ in range(3):
        await bed.create(amount_micros=500 * USDT_UNIT, batch_type=S.BATCH_TYPE_DAILY)
    controls = next(
        s for _, s in bed.server.app.servicers if isinstance(s, PayoutServiceServicer)
    ).controls
    controls.limits.limits.hourly = 1  # as if restarted with the defaults …
    await controls.load_limits()  # … the stored override comes back
    status = await admin.GetBreakerStatus(S.GetBreakerStatusRequest())
    assert status.limits.hourly_limit_amount_micros == 2_000 * USDT_UNIT
    assert status.hourly_used_amount_micros == 1_500 * USDT_UNIT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.UpdatePayoutLimits(
            S.UpdatePayoutLimitsRequest(v0_max_amount_micros=20_000 * USDT_UNIT, reason="x")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_wallets_are_renamed_locked_and_archived_by_their_owner(
    bed: PaymentsBed, mesh: Mesh
) -> None:
    owner = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    stranger = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    stub = bed.wallet_stub("operator")
    wallet = (
        await stub.CreateWallet(
            wallets_pb2.CreateWalletRequest(name="a", currency=tron_pb2.CURRENCY_USDT),
            metadata=owner,
        )
    ).wallet
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateWallet(
            wallets_pb2.UpdateWalletRequest(wallet_id=wallet.wallet_id, name="mine"),
            metadata=stranger,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    locked = await stub.UpdateWallet(
        wallets_pb2.UpdateWalletRequest(
            wallet_id=wallet.wallet_id, name="b", status=wallets_pb2.WALLET_STATUS_LOCKED
        ),
        metadata=owner,
    )
    assert locked.wallet.name == "b" and locked.wallet.status == wallets_pb2.WALLET_STATUS_LOCKED
    archived = await stub.DeleteWallet(
        wallets_pb2.DeleteWalletRequest(wallet_id=wallet.wallet_id), metadata=owner
    )
    assert archived.wallet.status == wallets_pb2.WALLET_STATUS_ARCHIVED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UpdateWallet(
            wallets_pb2.UpdateWalletRequest(wallet_id=wallet.wallet_id, name="c"), metadata=owner
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_an_unreachable_network_is_reported_and_nothing_is_stored(bed: PaymentsBed) -> None:
    await asyncio.to_thread(bed.devnet.kill)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bed.create()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert details(caught.value).reason == "LUCID_ERR_4010"
    assert (await bed.stub().ListPayouts(S.ListPayoutsRequest())).total_size == 0
    network = tron_pb2_grpc.TronNetworkServiceStub(bed.mesh.channel("payments", "admin"))
    status = await network.GetNetworkStatus(tron_pb2.GetNetworkStatusRequest())
    assert not status.connected and status.message
    await asyncio.to_thread(bed.devnet.start)  # the bed stops it
