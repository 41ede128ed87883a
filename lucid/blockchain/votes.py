"""Consensus votes submitted by validators (``SubmitConsensusVote``): who may vote, what the
signature covers, the open round a block vote needs, and the vote recorded on the chain
as a consensus-vote transaction."""

from __future__ import annotations

from datetime import UTC

from lucid.blockchain.consensus import RoundView
from lucid.blockchain.keys import verify_signature
from lucid.blockchain.node import ChainNode
from lucid.blockchain.store.chain import VOTES, Doc
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import canonical
from lucid.lib.ids import new_id
from lucid.runtime.errors import ErrorCode, LucidError


def vote_message(request: cpb.SubmitConsensusVoteRequest) -> bytes:
    """What a consensus vote's signature covers: every field but the signature."""
    return canonical.encode_message(canonical.VOTE_TAG, request, exclude=frozenset({"signature"}))


async def submit_vote(
    node: ChainNode, request: cpb.SubmitConsensusVoteRequest
) -> tuple[Doc, RoundView | None]:
    """Records a validator's vote (once per voter and target) and its transaction; the
    round it voted in, for a block vote."""
    ready = node.require()
    if ready.validators.key_of(request.voter_id) != request.public_key:
        raise LucidError(
            ErrorCode.ERROR_CODE_NOT_PARTICIPANT,
            f"{request.voter_id} is not a consensus participant with this key",
        )
    if not verify_signature(request.public_key, vote_message(request), request.signature):
        raise LucidError(
            ErrorCode.ERROR_CODE_CHAIN_SIGNATURE_INVALID, "the vote's signature does not verify"
        )
    view = None
    if request.vote_type == pb.VOTE_TYPE_BLOCK:
        view = ready.engine.open_round(request.target_id)
        if view is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_NO_OPEN_ROUND,
                f"no consensus round is open on block {request.target_id}",
            )
    doc: Doc = {
        "vote_id": new_id(),
        "voter_id": request.voter_id,
        "vote_type": int(request.vote_type),
        "target_id": request.target_id,
        "decision": int(request.decision),
        "signature": request.signature,
        "tx_hash": "",
        "vote_time": request.vote_time.ToDatetime(tzinfo=UTC),
    }
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_CONSENSUS_VOTE,
        consensus_vote=pb.ConsensusVotePayload(
            voter_id=request.voter_id,
            vote_type=request.vote_type,
            target_id=request.target_id,
            decision=request.decision,
            reasoning=request.reasoning,
        ),
    )
    doc, _ = await node.submit_record(
        VOTES, doc, body, f"{request.voter_id} already voted on {request.target_id}"
    )
    return doc, view
