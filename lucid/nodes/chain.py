"""The chain's task-proof rpc, called as the nodes service (plane rule
``nodes-prove-tasks-and-read-chain``)."""

from __future__ import annotations

from typing import Protocol

import grpc

from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.blockchain.v1 import consensus_pb2_grpc
from lucid.runtime.channels import Channels
from lucid.runtime.errors import ErrorCode, ErrorDetails, LucidError

CHAIN_CALL_TIMEOUT_S = 10.0


class ChainProofs(Protocol):
    """Puts a task proof on the chain."""

    async def submit(self, proof: cpb.TaskProof) -> cpb.SubmitTaskProofResponse:
        """SubmitTaskProof; a refusal is a ``LucidError`` with the chain's code."""
        ...


class ChainClient:
    """SubmitTaskProof over the mesh."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def submit(self, proof: cpb.TaskProof) -> cpb.SubmitTaskProofResponse:
        stub = await self._channels.stub("blockchain", consensus_pb2_grpc.ConsensusServiceStub)
        try:
            response: cpb.SubmitTaskProofResponse = await stub.SubmitTaskProof(
                cpb.SubmitTaskProofRequest(proof=proof), timeout=CHAIN_CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            details = ErrorDetails.from_rpc_error(exc)
            code = int(details.reason.removeprefix("LUCID_ERR_") or 0)
            if code in (
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                ErrorCode.ERROR_CODE_CHAIN_SIGNATURE_INVALID,
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                ErrorCode.ERROR_CODE_TRANSACTION_INVALID,
            ):
                raise LucidError(code, f"the chain refused the proof: {details.message}") from None
            raise LucidError(
                ErrorCode.ERROR_CODE_CHAIN_UNAVAILABLE,
                f"the chain did not take the proof: {details.message}",
            ) from None
        return response
