"""Stake 2.0 on the payout hot wallet over gRPC (spec 07 §7 check 10)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from lucid.common.v1 import access_pb2
from lucid.payments.v1 import tron_pb2, tron_pb2_grpc
from lucid.payments.wallets import HOT_WALLET_ID
from lucid.runtime.config import Settings
from tests.payments_support import PaymentsBed, payments_bed
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
