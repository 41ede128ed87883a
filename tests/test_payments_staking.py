"""A hot wallet's own transactions over gRPC: Stake 2.0 on the payout wallet (spec 07 §7
check 10) and USDT transfers and approvals from a user's wallet, once per key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from lucid.common.v1 import access_pb2
from lucid.payments.v1 import tron_pb2, tron_pb2_grpc, wallets_pb2, wallets_pb2_grpc
from lucid.payments.wallets import HOT_WALLET_ID
from lucid.runtime.config import Settings
from tests.payments_support import PaymentsBed, new_address, payments_bed
from tests.support import Mesh, bearer

TRX = 1_000_000


@pytest.fixture
async def bed(settings: Settings, mesh: Mesh, tmp_path: Path) -> AsyncIterator[PaymentsBed]:
    async with payments_bed(settings, mesh, tmp_path) as bed:
        yield bed


async def test_stake_for_energy_unstake_and_withdraw_after_14_days(
    bed: PaymentsBed, mesh: Mesh
) -> None:
    admin = bearer(await mesh.token(role=access_pb2.ROLE_ADMIN))
    stub = tron_pb2_grpc.StakingServiceStub(bed.mesh.channel("payments", "operator"))
    energy = tron_pb2.TRON_RESOURCE_ENERGY

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Stake(
            tron_pb2.StakeRequest(
                wallet_id=HOT_WALLET_ID, amount_micros=999 * TRX, resource=energy,
                idempotency_key="stake-999",
            ),
            metadata=admin,
        )  # fmt: skip
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    stake = tron_pb2.StakeRequest(
        wallet_id=HOT_WALLET_ID, amount_micros=1000 * TRX, resource=energy,
        idempotency_key=str(uuid.uuid4()),
    )  # fmt: skip
    first = await stub.Stake(stake, metadata=admin)
    again = await stub.Stake(stake, metadata=admin)
    assert again.stake.stake_id == first.stake.stake_id
    await bed.mine()
    status = await stub.GetStakingStatus(
        tron_pb2.GetStakingStatusRequest(wallet_id=HOT_WALLET_ID), metadata=admin
    )
    assert status.energy_limit > 0
    assert status.frozen_energy_amount_micros == 1000 * TRX  # staked once, not twice

    await stub.Unstake(
        tron_pb2.UnstakeRequest(
            wallet_id=HOT_WALLET_ID, amount_micros=1000 * TRX, resource=energy,
            idempotency_key=str(uuid.uuid4()),
        ),
        metadata=admin,
    )  # fmt: skip
    await bed.mine()
    withdraw = tron_pb2.WithdrawUnstakedRequest(
        wallet_id=HOT_WALLET_ID, idempotency_key=str(uuid.uuid4())
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.WithdrawUnstaked(withdraw, metadata=admin)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = await stub.GetStakingStatus(
        tron_pb2.GetStakingStatusRequest(wallet_id=HOT_WALLET_ID), metadata=admin
    )
    assert [u.status for u in status.unfreezes] == [tron_pb2.UNFREEZE_STATUS_LOCKED]
    await asyncio.to_thread(bed.devnet.admin, "advance_time", days=14)
    before = await asyncio.to_thread(bed.devnet.client().get_account_balance, bed.hot_address)
    withdrawn = await stub.WithdrawUnstaked(withdraw, metadata=admin)
    assert withdrawn.amount_micros == 1000 * TRX
    await bed.mine()
    after = await asyncio.to_thread(bed.devnet.client().get_account_balance, bed.hot_address)
    assert 999 < after - before <= 1000  # back, less the bandwidth


async def test_usdt_transfer_and_approve_from_a_users_wallet_once_per_key(
    bed: PaymentsBed, mesh: Mesh
) -> None:
    user = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    channel = bed.mesh.channel("payments", "operator")
    wallet = (
        await wallets_pb2_grpc.WalletServiceStub(channel).CreateWallet(
            wallets_pb2.CreateWalletRequest(name="mine", currency=tron_pb2.CURRENCY_USDT),
            metadata=user,
        )
    ).wallet
    await asyncio.to_thread(
        bed.devnet.admin, "fund", address=wallet.address, trx_sun=500 * TRX, usdt_micros=9 * TRX
    )
    usdt = tron_pb2_grpc.UsdtServiceStub(channel)
    to = new_address()
    request = tron_pb2.TransferUsdtRequest(
        wallet_id=wallet.wallet_id, to_address=to, amount_micros=4 * TRX, memo="rent",
        idempotency_key=str(uuid.uuid4()),
    )  # fmt: skip
    answers = await asyncio.gather(*(usdt.TransferUsdt(request, metadata=user) for _ in range(5)))
    assert len({a.transfer.transfer_id for a in answers}) == 1
    approve = tron_pb2.ApproveUsdtRequest(
        wallet_id=wallet.wallet_id, spender_address=to, amount_micros=2 * TRX,
        idempotency_key=str(uuid.uuid4()),
    )  # fmt: skip
    await usdt.ApproveUsdt(approve, metadata=user)
    await bed.mine()
    assert await bed.usdt_of(to) == 4 * TRX  # once, though asked five times
    allowance = await usdt.GetUsdtAllowance(
        tron_pb2.GetUsdtAllowanceRequest(owner_address=wallet.address, spender_address=to),
        metadata=user,
    )
    assert allowance.allowance_micros == 2 * TRX
    overdraft = tron_pb2.TransferUsdtRequest(
        wallet_id=wallet.wallet_id, to_address=to, amount_micros=100 * TRX,
        idempotency_key=str(uuid.uuid4()),
    )  # fmt: skip
    await usdt.TransferUsdt(overdraft, metadata=user)  # admitted, reverts when mined
    await bed.mine(19)
    listed = await usdt.ListUsdtTransfers(
        tron_pb2.ListUsdtTransfersRequest(wallet_id=wallet.wallet_id), metadata=user
    )
    states = {t.amount_micros: (t.status, t.memo) for t in listed.transfers}
    assert states == {
        4 * TRX: (tron_pb2.TRANSFER_STATUS_CONFIRMED, "rent"),
        100 * TRX: (tron_pb2.TRANSFER_STATUS_FAILED, ""),
    }
    assert await bed.usdt_of(to) == 4 * TRX
    stranger = bearer(await mesh.token(role=access_pb2.ROLE_USER))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await usdt.TransferUsdt(
            tron_pb2.TransferUsdtRequest(
                wallet_id=wallet.wallet_id, to_address=to, amount_micros=1,
                idempotency_key=str(uuid.uuid4()),
            ),
            metadata=stranger,
        )  # fmt: skip
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
