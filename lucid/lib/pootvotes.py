"""PoOT validation votes (spec 05 §1 "PoOT votes to cluster 02"): a node's signed verdict
on another node's task proof, as the chain's ``SubmitConsensusVote`` carries it.

A vote is a ``lucid.blockchain.v1.SubmitConsensusVoteRequest``; its Ed25519 signature
covers the chain's canonical encoding of every field but the signature
(``canonical.VOTE_TAG``). A PoOT vote of a validation task is built from what both the
node agent that signs and the nodes cluster that checks know: voter = the validating
node (its registered key), target = the node whose proof it checked, decision = approve
when the signature verifies, else reject, ``vote_time`` = the start of the task's slot
(the chain counts the vote in that slot) and a reasoning that names the checked proof
by its signature. The chain rebuilds the same vote from the transaction that records it
(``from_payload``). Pure functions, shared by the chain, the nodes cluster and the agent.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.signing

from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import canonical, taskproofs


def signing_bytes(vote: cpb.SubmitConsensusVoteRequest) -> bytes:
    """What a vote's signature covers (the chain's definition)."""
    return canonical.encode_message(canonical.VOTE_TAG, vote, exclude=frozenset({"signature"}))


def reasoning(slot: int, proof_signature: str) -> str:
    """The reasoning of a validation vote: the task slot and the checked proof."""
    return f"validation task of slot {slot}: task proof signed {proof_signature}"


def poot_vote(
    *,
    voter_id: str,
    public_key: str,
    target_id: str,
    slot: int,
    approve: bool,
    proof_signature: str,
) -> cpb.SubmitConsensusVoteRequest:
    """The PoOT validation vote of a verdict in a validation task of ``slot``, unsigned."""
    vote = cpb.SubmitConsensusVoteRequest(
        voter_id=voter_id,
        vote_type=pb.VOTE_TYPE_POOT_VALIDATION,
        target_id=target_id,
        decision=pb.VOTE_DECISION_APPROVE if approve else pb.VOTE_DECISION_REJECT,
        reasoning=reasoning(slot, proof_signature),
        public_key=public_key,
    )
    vote.vote_time.FromDatetime(taskproofs.slot_start(slot))
    return vote


def sign(vote: cpb.SubmitConsensusVoteRequest, key: nacl.signing.SigningKey) -> str:
    """The signature of a vote, hex."""
    return key.sign(signing_bytes(vote)).signature.hex()


def verifies(vote: cpb.SubmitConsensusVoteRequest) -> bool:
    """Whether the vote's signature verifies with its public key."""
    try:
        nacl.signing.VerifyKey(bytes.fromhex(vote.public_key)).verify(
            signing_bytes(vote), bytes.fromhex(vote.signature)
        )
    except (nacl.exceptions.BadSignatureError, ValueError, canonical.EncodingError):
        return False
    return True


def payload(vote: cpb.SubmitConsensusVoteRequest) -> pb.ConsensusVotePayload:
    """The consensus_vote transaction data recording a vote, with its signature."""
    data = pb.ConsensusVotePayload(
        voter_id=vote.voter_id,
        vote_type=vote.vote_type,
        target_id=vote.target_id,
        decision=vote.decision,
        reasoning=vote.reasoning,
        public_key=vote.public_key,
        signature=vote.signature,
    )
    if vote.HasField("vote_time"):
        data.vote_time.CopyFrom(vote.vote_time)
    return data


def from_payload(data: pb.ConsensusVotePayload) -> cpb.SubmitConsensusVoteRequest:
    """The vote a consensus_vote transaction records (``payload`` reversed)."""
    vote = cpb.SubmitConsensusVoteRequest(
        voter_id=data.voter_id,
        vote_type=data.vote_type,
        target_id=data.target_id,
        decision=data.decision,
        reasoning=data.reasoning,
        public_key=data.public_key,
        signature=data.signature,
    )
    if data.HasField("vote_time"):
        vote.vote_time.CopyFrom(data.vote_time)
    return vote
