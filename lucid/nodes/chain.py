"""The chain's task-proof and vote rpcs, called as the nodes service (plane rule
``nodes-prove-tasks-and-read-chain``): SubmitTaskProof, and SubmitConsensusVote for
the PoOT votes of nodes' verdicts on each other's proofs (spec 05 §1)."""

from __future__ import annotations

from typing import Protocol

import grpc

from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.blockchain.v1 import consensus_pb2_grpc
from lucid.runtime.channels import Channels
from lucid.runtime.errors import ErrorCode, ErrorDetails, LucidError

CHAIN_CALL_TIMEOUT_S = 10.0
REFUSALS = (
    ErrorCode.ERROR_CODE_ALREADY_EXISTS,
    ErrorCode.ERROR_CODE_CHAIN_SIGNATURE_INVALID,
    ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
    ErrorCode.ERROR_CODE_TRANSACTION_INVALID,
    ErrorCode.ERROR_CODE_NOT_PARTICIPANT,
)
"""The chain's answers that refuse what was sent (anything else: the chain did not take it)."""


class ChainProofs(Protocol):
    """Puts task proofs and PoOT votes on the chain."""

    async def submit(self, proof: cpb.TaskProof) -> cpb.SubmitTaskProofResponse:
        """SubmitTaskProof; a refusal is a ``LucidError`` with the chain's code."""
        ...

    async def vote(self, vote: cpb.SubmitConsensusVoteRequest) -> cpb.SubmitConsensusVoteResponse:
        """SubmitConsensusVote; a refusal is a ``LucidError`` with the chain's code."""
        ...


def _refusal(exc: grpc.aio.AioRpcError, what: str) -> LucidError:
    details = ErrorDetails.from_rpc_error(exc)
    code = details.code
    if code in REFUSALS:
        return LucidError(code, f"the chain refused the {what}: {details.message}")
    return LucidError(
        ErrorCode.ERROR_CODE_CHAIN_UNAVAILABLE,
        f"the chain did not take the {what}: {details.message}",
    )


class ChainClient:
    """SubmitTaskProof and SubmitConsensusVote over the mesh."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def _stub(self) -> consensus_pb2_grpc.ConsensusServiceStub:
        return await self._channels.stub("blockchain", consensus_pb2_grpc.ConsensusServiceStub)

    async def submit(self, proof: cpb.TaskProof) -> cpb.SubmitTaskProofResponse:
        stub = await self._stub()
        try:
            response: cpb.SubmitTaskProofResponse = await stub.SubmitTaskProof(
                cpb.SubmitTaskProofRequest(proof=proof), timeout=CHAIN_CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise _refusal(exc, "proof") from None
        return response

    async def vote(self, vote: cpb.SubmitConsensusVoteRequest) -> cpb.SubmitConsensusVoteResponse:
        stub = await self._stub()
        try:
            response: cpb.SubmitConsensusVoteResponse = await stub.SubmitConsensusVote(
                vote, timeout=CHAIN_CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise _refusal(exc, "vote") from None
        return response
