"""The payments cluster's ``VerifyStake``, called as the nodes service (plane rule
``nodes-verify-stakes``): is a registering node's stake transaction a confirmed USDT
payment from its address to the stake address, of at least the declared amount?

Refusals come back as the payments cluster sent them (``LUCID_ERR_4601`` not confirmed
yet, with its retry delay; ``4602`` not a valid stake; ``4603`` paid by another address;
``4010`` TRON unreachable). When the payments cluster itself cannot be reached the
answer is UNAVAILABLE ``LUCID_ERR_5008``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc

from lucid.payments.v1 import tron_pb2, tron_pb2_grpc
from lucid.runtime.channels import Channels, UnavailableClusterError
from lucid.runtime.errors import ErrorCode, ErrorDetails, LucidError

CALL_TIMEOUT_S = 15.0
UNREACHABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.CANCELLED,
    }
)
PASSED_ON: frozenset[int] = frozenset(
    {
        ErrorCode.ERROR_CODE_STAKE_UNCONFIRMED,
        ErrorCode.ERROR_CODE_STAKE_INVALID,
        ErrorCode.ERROR_CODE_STAKE_NOT_OWNED,
        ErrorCode.ERROR_CODE_PAYMENT_NETWORK_UNAVAILABLE,
        ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
    }
)
"""Refusals the caller of RegisterNode is told as they are."""


@dataclass(frozen=True)
class Stake:
    """A verified stake."""

    tx_id: str
    amount_micros: int


class StakeVerifier(Protocol):
    """Verifies stakes through cluster 07."""

    async def verify(self, tx_id: str, node_address: str, min_amount_micros: int) -> Stake:
        """The verified stake, or a ``LucidError``."""
        ...


def _unreachable(why: str) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE,
        f"the payments cluster cannot verify the stake now ({why}); try again",
        retry_after_s=5.0,
    )


class PaymentsStakeVerifier:
    """``UsdtService.VerifyStake`` over the mesh."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def verify(self, tx_id: str, node_address: str, min_amount_micros: int) -> Stake:
        try:
            stub = await self._channels.stub("payments", tron_pb2_grpc.UsdtServiceStub)
        except UnavailableClusterError as exc:
            raise _unreachable(str(exc)) from None
        request = tron_pb2.VerifyStakeRequest(
            tx_id=tx_id, node_address=node_address, min_amount_micros=min_amount_micros
        )
        try:
            reply: tron_pb2.VerifyStakeResponse = await stub.VerifyStake(
                request, timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in UNREACHABLE:
                raise _unreachable(exc.code().name) from None
            details = ErrorDetails.from_rpc_error(exc)
            code = details.code
            if code is None or code not in PASSED_ON:
                raise _unreachable(f"{exc.code().name}: {details.message}") from None
            raise LucidError(code, details.message, retry_after_s=details.retry_after_s) from None
        return Stake(tx_id=reply.tx_id, amount_micros=reply.amount_micros)
