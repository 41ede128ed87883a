"""gRPC adapter of ``lucid.payments.v1.WalletService`` (never carries a key)."""

from __future__ import annotations

import grpc

from lucid.payments import convert
from lucid.payments.calls import CallLimits
from lucid.payments.network import NetworkError, TronNetwork
from lucid.payments.servicers import current_actor
from lucid.payments.store.transfers import WALLET_TRANSACTION, TransferRecord
from lucid.payments.transfers import Send, Transfers
from lucid.payments.v1 import wallets_pb2, wallets_pb2_grpc
from lucid.payments.wallets import Wallets
from lucid.runtime import paging
from lucid.runtime.wire import timestamp


class WalletServiceServicer(wallets_pb2_grpc.WalletServiceServicer):
    """Wallet rpcs."""

    def __init__(
        self,
        wallets: Wallets,
        network: TronNetwork,
        transfers: Transfers,
        confirmations: int,
        calls: CallLimits,
    ) -> None:
        self.calls = calls
        self.wallets = wallets
        self.network = network
        self.transfers = transfers
        self.confirmations = confirmations

    def _transaction(self, record: TransferRecord) -> wallets_pb2.WalletTransaction:
        return convert.wallet_transaction(record, self.transfers.sender.head, self.confirmations)

    async def CreateWalletTransaction(
        self,
        request: wallets_pb2.CreateWalletTransactionRequest,
        context: grpc.aio.ServicerContext,
    ) -> wallets_pb2.CreateWalletTransactionResponse:
        await self.calls.count()
        record = await self.transfers.send(
            current_actor(),
            WALLET_TRANSACTION,
            Send(
                idempotency_key=request.idempotency_key,
                wallet_id=request.wallet_id,
                currency=request.currency,
                amount_micros=request.amount_micros,
                recipient=request.recipient_address,
                memo=request.memo,
                tx_type=request.type,
            ),
        )
        return wallets_pb2.CreateWalletTransactionResponse(transaction=self._transaction(record))

    async def GetWalletTransaction(
        self, request: wallets_pb2.GetWalletTransactionRequest, context: grpc.aio.ServicerContext
    ) -> wallets_pb2.GetWalletTransactionResponse:
        await self.calls.count()
        record = await self.transfers.wallet_transaction(
            current_actor(), request.wallet_id, request.transaction_id
        )
        return wallets_pb2.GetWalletTransactionResponse(transaction=self._transaction(record))

    async def ListWalletTransactions(
        self,
        request: wallets_pb2.ListWalletTransactionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> wallets_pb2.ListWalletTransactionsResponse:
        await self.calls.count()
        actor = current_actor()
        page = paging.page(request, scope=actor.user_id)
        records, total = await self.transfers.wallet_transactions(
            actor,
            request.wallet_id,
            convert.TRANSFER_STATUS_NAMES.get(request.status, []),
            page.offset,
            page.size,
        )
        return wallets_pb2.ListWalletTransactionsResponse(
            transactions=[self._transaction(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )

    async def CreateWallet(
        self, request: wallets_pb2.CreateWalletRequest, context: grpc.aio.ServicerContext
    ) -> wallets_pb2.CreateWalletResponse:
        await self.calls.count()
        record = await self.wallets.create(
            current_actor(),
            request.name,
            request.currency,
            convert.WALLET_TYPE_NAMES.get(request.wallet_type, "hot"),
            request.address,
        )
        return wallets_pb2.CreateWalletResponse(wallet=convert.wallet(record))

    async def GetWallet(
        self, request: wallets_pb2.GetWalletRequest, context: grpc.aio.ServicerContext
    ) -> wallets_pb2.GetWalletResponse:
        await self.calls.count()
        record = await self.wallets.get(current_actor(), request.wallet_id)
        return wallets_pb2.GetWalletResponse(wallet=convert.wallet(record))

    async def UpdateWallet(
        self, request: wallets_pb2.UpdateWalletRequest, context: grpc.aio.ServicerContext
    ) -> wallets_pb2.UpdateWalletResponse:
        await self.calls.count()
        record = await self.wallets.update(
            current_actor(),
            request.wallet_id,
            request.name,
            convert.WALLET_STATUS_NAMES.get(request.status, ""),
        )
        return wallets_pb2.UpdateWalletResponse(wallet=convert.wallet(record))

    async def DeleteWallet(
        self, request: wallets_pb2.DeleteWalletRequest, context: grpc.aio.ServicerContext
    ) -> wallets_pb2.DeleteWalletResponse:
        await self.calls.count()
        record = await self.wallets.update(current_actor(), request.wallet_id, "", "archived")
        return wallets_pb2.DeleteWalletResponse(wallet=convert.wallet(record))

    async def ListWallets(
        self, request: wallets_pb2.ListWalletsRequest, context: grpc.aio.ServicerContext
    ) -> wallets_pb2.ListWalletsResponse:
        await self.calls.count()
        actor = current_actor()
        page = paging.page(request, scope=actor.user_id)
        records, total = await self.wallets.list(
            actor,
            request.user_id,
            convert.WALLET_STATUS_NAMES.get(request.status, ""),
            request.currency,
            offset=page.offset,
            limit=page.size,
        )
        return wallets_pb2.ListWalletsResponse(
            wallets=[convert.wallet(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )

    async def GetWalletBalance(
        self, request: wallets_pb2.GetWalletBalanceRequest, context: grpc.aio.ServicerContext
    ) -> wallets_pb2.GetWalletBalanceResponse:
        await self.calls.count()
        record = await self.wallets.get(current_actor(), request.wallet_id)
        try:
            trx = await self.network.trx_balance(record.address)
            usdt = await self.network.usdt_balance(record.address)
        except NetworkError as exc:
            raise exc.as_lucid() from exc
        return wallets_pb2.GetWalletBalanceResponse(
            address=record.address,
            trx_amount_micros=trx,
            usdt_amount_micros=usdt,
            as_of_time=timestamp(self.wallets.clock.timestamp()),
        )
