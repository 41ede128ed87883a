"""gRPC adapters of ``lucid.payments.v1.TronNetworkService`` and ``UsdtService`` (reads)."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import grpc

from lucid.payments import convert
from lucid.payments.calls import CallLimits
from lucid.payments.network import NetworkError, Receipt, TronNetwork
from lucid.payments.operations import StakeOperation, WalletOperations
from lucid.payments.servicers import current_actor
from lucid.payments.stakes import Stakes
from lucid.payments.v1 import tron_pb2, tron_pb2_grpc
from lucid.payments.wallets import Wallets, check_address
from lucid.runtime import paging
from lucid.runtime.config import Settings
from lucid.runtime.wire import timestamp

MAINNET_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


class TronNetworkServiceServicer(tron_pb2_grpc.TronNetworkServiceServicer):
    """What network payouts go to, and whether it answers."""

    def __init__(
        self, network: TronNetwork, wallets: Wallets, settings: Settings, calls: CallLimits
    ) -> None:
        self.calls = calls
        self.network = network
        self.wallets = wallets
        self.settings = settings

    def _which(self) -> int:
        host = urlparse(self.settings.tron_endpoint).hostname or ""
        if host in {"127.0.0.1", "localhost", "::1"}:
            return tron_pb2.TRON_NETWORK_LOCAL
        if "nile" in host:
            return tron_pb2.TRON_NETWORK_NILE
        if "shasta" in host:
            return tron_pb2.TRON_NETWORK_SHASTA
        return tron_pb2.TRON_NETWORK_MAINNET

    async def GetNetworkInfo(
        self, request: tron_pb2.GetNetworkInfoRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.GetNetworkInfoResponse:
        await self.calls.count()
        try:
            params = await self.network.parameters()
        except NetworkError as exc:
            raise exc.as_lucid() from exc
        wallet = await self.wallets.payout_wallet()
        return tron_pb2.GetNetworkInfoResponse(
            network=self._which(),  # type: ignore[arg-type]
            chain_id="0x2b6653dc",
            usdt_contract_address=self.network.usdt_contract,
            usdt_decimals=6,
            energy_fee_sun=params.get("getEnergyFee", 0),
            bandwidth_fee_sun=params.get("getTransactionFee", 0),
            unfreeze_delay_days=params.get("getUnfreezeDelayDays", 0),
            required_confirmations=self.settings.tron_confirmations,
            fee_limit_amount_micros=self.network.fee_limit_sun,
            payout_wallet_address=wallet.address,
        )

    async def GetNetworkStatus(
        self, request: tron_pb2.GetNetworkStatusRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.GetNetworkStatusResponse:
        await self.calls.count()
        started = time.monotonic()
        now = self.wallets.clock.timestamp()
        try:
            head, head_ms, solid = await self.network.status()
        except NetworkError:
            return tron_pb2.GetNetworkStatusResponse(
                connected=False,
                network=self._which(),  # type: ignore[arg-type]
                check_time=timestamp(now),
                message="the TRON node is unreachable",
            )
        return tron_pb2.GetNetworkStatusResponse(
            connected=True,
            network=self._which(),  # type: ignore[arg-type]
            latest_block_number=head,
            latest_block_time=timestamp(head_ms / 1000),
            solidified_block_number=solid,
            latency_ms=int((time.monotonic() - started) * 1000),
            check_time=timestamp(now),
        )


TRANSFER = {
    "pending": tron_pb2.TRANSFER_STATUS_PENDING,
    "broadcast": tron_pb2.TRANSFER_STATUS_BROADCAST,
    "confirmed": tron_pb2.TRANSFER_STATUS_CONFIRMED,
    "failed": tron_pb2.TRANSFER_STATUS_FAILED,
}


def _transfer(op: StakeOperation, state: str, receipt: Receipt | None) -> tron_pb2.UsdtTransfer:
    tx = tron_pb2.TronTransaction(tx_hash=op.txid, required_confirmations=19)
    if receipt is not None:
        tx.block_number = receipt.block_number
        tx.fee_amount_micros = receipt.fee_sun
        tx.energy_used = receipt.energy_used
        tx.result_message = receipt.message
    return tron_pb2.UsdtTransfer(
        transfer_id=op.operation_id,
        wallet_id=op.wallet_id,
        from_address=op.address,
        to_address=op.to,
        amount_micros=op.amount_sun,
        memo=op.memo,
        status=TRANSFER[state],
        transaction=tx,
        idempotency_key=op.idempotency_key,
        error_message=receipt.message if state == "failed" and receipt else "",
        create_time=timestamp(op.create_time),
        update_time=timestamp(op.create_time),
    )


class UsdtServiceServicer(tron_pb2_grpc.UsdtServiceServicer):
    """USDT of hot wallets: transfers and approvals (once per key), balances, allowances."""

    def __init__(
        self,
        network: TronNetwork,
        wallets: Wallets,
        operations: WalletOperations,
        calls: CallLimits,
        stakes: Stakes,
    ) -> None:
        self.calls = calls
        self.network = network
        self.wallets = wallets
        self.operations = operations
        self.stakes = stakes

    async def VerifyStake(
        self, request: tron_pb2.VerifyStakeRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.VerifyStakeResponse:
        check_address(request.node_address, "node_address")
        verified = await self.stakes.verify(
            request.tx_id, request.node_address, request.min_amount_micros
        )
        return convert.verified_stake(verified)

    async def TransferUsdt(
        self, request: tron_pb2.TransferUsdtRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.TransferUsdtResponse:
        await self.calls.count()
        check_address(request.to_address, "to_address")
        operation = await self.operations.submit(
            current_actor(), request.idempotency_key, request.wallet_id, "transfer",
            amount_sun=request.amount_micros, to=request.to_address, memo=request.memo,
            fee_limit=request.fee_limit_amount_micros,
        )  # fmt: skip
        return tron_pb2.TransferUsdtResponse(
            transfer=tron_pb2.UsdtTransfer(
                transfer_id=operation.operation_id,
                wallet_id=operation.wallet_id,
                from_address=operation.address,
                to_address=operation.to,
                amount_micros=operation.amount_sun,
                memo=request.memo,
                status=tron_pb2.TRANSFER_STATUS_BROADCAST,
                transaction=tron_pb2.TronTransaction(
                    tx_hash=operation.txid, required_confirmations=19
                ),
                idempotency_key=operation.idempotency_key,
                create_time=timestamp(operation.create_time),
                update_time=timestamp(operation.create_time),
            )
        )

    async def ListUsdtTransfers(
        self, request: tron_pb2.ListUsdtTransfersRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.ListUsdtTransfersResponse:
        await self.calls.count()
        actor = current_actor()
        found = await self.operations.transfers(actor, request.wallet_id)
        wanted = [
            item for item in found if not request.status or TRANSFER[item[1]] == request.status
        ]
        page = paging.page(request, scope=actor.user_id)
        window = page.window(wanted)
        return tron_pb2.ListUsdtTransfersResponse(
            transfers=[_transfer(op, state, receipt) for op, state, receipt in window],
            next_page_token=page.next_token(len(window), len(wanted)),
            total_size=len(wanted),
        )

    async def ApproveUsdt(
        self, request: tron_pb2.ApproveUsdtRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.ApproveUsdtResponse:
        await self.calls.count()
        check_address(request.spender_address, "spender_address")
        operation = await self.operations.submit(
            current_actor(), request.idempotency_key, request.wallet_id, "approve",
            amount_sun=request.amount_micros, to=request.spender_address,
        )  # fmt: skip
        return tron_pb2.ApproveUsdtResponse(
            status=tron_pb2.TRANSFER_STATUS_BROADCAST,
            transaction=tron_pb2.TronTransaction(tx_hash=operation.txid, required_confirmations=19),
            allowance_micros=operation.amount_sun,
        )

    async def GetUsdtBalance(
        self, request: tron_pb2.GetUsdtBalanceRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.GetUsdtBalanceResponse:
        await self.calls.count()
        if request.WhichOneof("owner") == "wallet_id":
            address = (await self.wallets.get(current_actor(), request.wallet_id)).address
        else:
            address = request.address
            check_address(address, "address")
        try:
            amount = await self.network.usdt_balance(address)
        except NetworkError as exc:
            raise exc.as_lucid() from exc
        return tron_pb2.GetUsdtBalanceResponse(
            address=address,
            amount_micros=amount,
            as_of_time=timestamp(self.wallets.clock.timestamp()),
        )

    async def GetUsdtAllowance(
        self, request: tron_pb2.GetUsdtAllowanceRequest, context: grpc.aio.ServicerContext
    ) -> tron_pb2.GetUsdtAllowanceResponse:
        await self.calls.count()
        check_address(request.owner_address, "owner_address")
        check_address(request.spender_address, "spender_address")
        try:
            amount = await self.network.usdt_allowance(
                request.owner_address, request.spender_address
            )
        except NetworkError as exc:
            raise exc.as_lucid() from exc
        return tron_pb2.GetUsdtAllowanceResponse(allowance_micros=amount)
