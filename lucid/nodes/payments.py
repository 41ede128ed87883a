"""The payments cluster's payout rpcs, called as the nodes service (plane rule
``payouts-from-nodes-and-admin``): CreatePayout with the payout id as idempotency
key, GetPayout to follow it."""

from __future__ import annotations

from typing import Protocol

import grpc
from google.protobuf import struct_pb2

from lucid.nodes.store.payouts import PayoutRecord
from lucid.payments.v1 import payouts_pb2 as pay
from lucid.payments.v1 import payouts_pb2_grpc
from lucid.runtime.channels import Channels, UnavailableClusterError
from lucid.runtime.errors import ErrorCode, ErrorDetails, LucidError

CALL_TIMEOUT_S = 15.0
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.ABORTED,
    }
)


class PaymentsUnavailableError(Exception):
    """The payments cluster did not take the call; try again later."""


class PayoutRail(Protocol):
    """Hands payouts to cluster 07 and reads them back."""

    async def create(self, payout: PayoutRecord) -> pay.Payout:
        """CreatePayout; a refusal is a ``LucidError``, an outage ``PaymentsUnavailableError``."""
        ...

    async def status(self, payment_payout_id: str) -> pay.Payout:
        """GetPayout."""
        ...


def _refusal(exc: grpc.aio.AioRpcError) -> Exception:
    if exc.code() in RETRYABLE:
        return PaymentsUnavailableError(f"{exc.code().name}: {exc.details()}")
    details = ErrorDetails.from_rpc_error(exc)
    return LucidError(details.code or ErrorCode.ERROR_CODE_UNKNOWN, details.message)


class PaymentsClient:
    """The payout rpcs over the mesh."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def _stub(self) -> payouts_pb2_grpc.PayoutServiceStub:
        try:
            return await self._channels.stub("payments", payouts_pb2_grpc.PayoutServiceStub)
        except UnavailableClusterError as exc:
            raise PaymentsUnavailableError(str(exc)) from None

    async def create(self, payout: PayoutRecord) -> pay.Payout:
        custom = struct_pb2.Struct()
        custom.update({"work_credits": payout.work_credits, "epoch": payout.epoch})
        request = pay.CreatePayoutRequest(
            idempotency_key=payout.payout_id,
            recipient_address=payout.wallet_address,
            amount_micros=payout.amount_micros,
            reason=payout.reason or f"node {payout.node_id} work credits",
            node_id=payout.node_id,
            custom_data=custom,
        )
        try:
            reply: pay.CreatePayoutResponse = await (await self._stub()).CreatePayout(
                request, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise _refusal(exc) from None
        return reply.payout

    async def status(self, payment_payout_id: str) -> pay.Payout:
        try:
            reply: pay.GetPayoutResponse = await (await self._stub()).GetPayout(
                pay.GetPayoutRequest(payout_id=payment_payout_id), timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise _refusal(exc) from None
        return reply.payout
