"""gRPC adapter of ``lucid.payments.v1.StakingService``."""

from __future__ import annotations

import grpc

from lucid.payments.calls import CallLimits
from lucid.payments.operations import StakeOperation, WalletOperations
from lucid.payments.servicers import current_actor
from lucid.payments.v1 import tron_pb2, tron_pb2_grpc
from lucid.runtime.wire import timestamp

RESOURCES = {tron_pb2.TRON_RESOURCE_ENERGY: "ENERGY", tron_pb2.TRON_RESOURCE_BANDWIDTH: "BANDWIDTH"}
RESOURCE_ENUMS = {v: k for k, v in RESOURCES.items()}


def _tx(operation: StakeOperation) -> tron_pb2.TronTransaction:
    return tron_pb2.TronTransaction(tx_hash=operation.txid, required_confirmations=19)


class StakingServiceServicer(tron_pb2_grpc.StakingServiceServicer):
    """Staking rpcs."""

    def __init__(self, staking: WalletOperations, calls: CallLimits) -> None:
        self.staking = staking
        self.calls = calls

    async def Stake(
        self, request: tron_pb2.StakeRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.StakeResponse:
        await self.calls.count()
        operation = await self.staking.submit(
            current_actor(), request.idempotency_key, request.wallet_id, "freeze",
            amount_sun=request.amount_micros, resource=RESOURCES[request.resource],
        )  # fmt: skip
        return tron_pb2.StakeResponse(
            stake=tron_pb2.StakeEntry(
                stake_id=operation.operation_id,
                wallet_id=operation.wallet_id,
                address=operation.address,
                amount_micros=operation.amount_sun,
                resource=RESOURCE_ENUMS[operation.resource],
                status=tron_pb2.STAKE_STATUS_ACTIVE,
                transaction=_tx(operation),
                create_time=timestamp(operation.create_time),
            )
        )

    async def Unstake(
        self, request: tron_pb2.UnstakeRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.UnstakeResponse:
        await self.calls.count()
        operation = await self.staking.submit(
            current_actor(), request.idempotency_key, request.wallet_id, "unfreeze",
            amount_sun=request.amount_micros, resource=RESOURCES[request.resource],
        )  # fmt: skip
        return tron_pb2.UnstakeResponse(
            unfreeze=tron_pb2.UnfreezeEntry(
                unfreeze_id=operation.operation_id,
                wallet_id=operation.wallet_id,
                amount_micros=operation.amount_sun,
                resource=RESOURCE_ENUMS[operation.resource],
                status=tron_pb2.UNFREEZE_STATUS_LOCKED,
                transaction=_tx(operation),
                create_time=timestamp(operation.create_time),
            )
        )

    async def WithdrawUnstaked(
        self, request: tron_pb2.WithdrawUnstakedRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.WithdrawUnstakedResponse:
        await self.calls.count()
        actor = current_actor()
        status = await self.staking.status(actor, request.wallet_id)
        now_ms = self.staking.clock.timestamp() * 1000
        # The node is the judge of the 14-day delay (it refuses an early withdrawal);
        # what it withdraws is every due entry, all of them if our clock lags its own.
        operation = await self.staking.submit(
            actor, request.idempotency_key, request.wallet_id, "withdraw", amount_sun=0, resource=""
        )
        due = [u for u in status.unfreezing if u[2] <= now_ms] or status.unfreezing
        return tron_pb2.WithdrawUnstakedResponse(
            amount_micros=sum(u[1] for u in due),
            withdrawn=[
                tron_pb2.UnfreezeEntry(
                    wallet_id=request.wallet_id,
                    amount_micros=amount,
                    resource=RESOURCE_ENUMS.get(resource, tron_pb2.TRON_RESOURCE_BANDWIDTH),
                    status=tron_pb2.UNFREEZE_STATUS_WITHDRAWN,
                    unlock_time=timestamp(unlock / 1000),
                )
                for resource, amount, unlock in due
            ],
            transaction=_tx(operation),
        )

    async def GetStakingStatus(
        self, request: tron_pb2.GetStakingStatusRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.GetStakingStatusResponse:
        await self.calls.count()
        status = await self.staking.status(current_actor(), request.wallet_id)
        now_ms = self.staking.clock.timestamp() * 1000
        return tron_pb2.GetStakingStatusResponse(
            address=status.address,
            frozen_energy_amount_micros=status.frozen.get("ENERGY", 0),
            frozen_bandwidth_amount_micros=status.frozen.get("BANDWIDTH", 0),
            energy_limit=status.energy_limit,
            energy_used=status.energy_used,
            net_limit=status.net_limit,
            net_used=status.net_used,
            free_net_limit=status.free_net_limit,
            unfreezes=[
                tron_pb2.UnfreezeEntry(
                    wallet_id=request.wallet_id,
                    amount_micros=amount,
                    resource=RESOURCE_ENUMS.get(resource, tron_pb2.TRON_RESOURCE_BANDWIDTH),
                    status=(
                        tron_pb2.UNFREEZE_STATUS_WITHDRAWABLE
                        if unlock <= now_ms
                        else tron_pb2.UNFREEZE_STATUS_LOCKED
                    ),
                    unlock_time=timestamp(unlock / 1000),
                )
                for resource, amount, unlock in status.unfreezing
            ],
        )

    async def GetStakingRewards(
        self, request: tron_pb2.GetStakingRewardsRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.GetStakingRewardsResponse:
        """Claimable rewards and the last claim come from the network. What was claimed
        in all is not something a TRON node reports, and this cluster has no claim rpc
        (WithdrawBalance), so ``claimed_amount_micros`` stays 0."""
        await self.calls.count()
        rewards = await self.staking.rewards(current_actor(), request.wallet_id)
        out = tron_pb2.GetStakingRewardsResponse(
            address=rewards.address, claimable_amount_micros=rewards.claimable
        )
        if rewards.last_claim_ms:
            out.last_claim_time.CopyFrom(timestamp(rewards.last_claim_ms / 1000))
        return out
