"""Proto mapping of the blockchain rpcs: stored blocks as list entries, stored consensus
rounds, the round in progress and leader slots as the contract shows them."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from lucid.blockchain.consensus import RoundView
from lucid.blockchain.keys import ValidatorSet
from lucid.blockchain.reads import LeaderSlot
from lucid.blockchain.store.chain import Doc, VoteFilter
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.runtime.wire import optional_timestamp

ROUND_STATUS = {
    "pending": cpb.ROUND_STATUS_PENDING,
    "approved": cpb.ROUND_STATUS_APPROVED,
    "rejected": cpb.ROUND_STATUS_REJECTED,
    "failed": cpb.ROUND_STATUS_FAILED,
}
ROUND_NAMES = {number: name for name, number in ROUND_STATUS.items()}


def summary(doc: Doc, tip_height: int) -> pb.BlockSummary:
    """A stored block as a list entry."""
    result = pb.BlockSummary(
        height=int(doc["height"]),
        hash=doc["hash"],
        previous_hash=doc["previous_hash"],
        merkle_root=doc["merkle_root"],
        proposer_id=doc["proposer_id"],
        transaction_count=int(doc["transaction_count"]),
        status=pb.BLOCK_STATUS_CONFIRMED,
        approval_count=len(doc.get("approvals", [])),
        confirmations=tip_height - int(doc["height"]) + 1,
        final=True,
        size_bytes=int(doc.get("size_bytes", 0)),
    )
    result.block_time.seconds = int(doc["block_time_s"])
    result.block_time.nanos = int(doc["block_time_nanos"])
    return result


def round_proto(doc: Doc) -> cpb.ConsensusRound:
    """A stored round."""
    result = cpb.ConsensusRound(
        round_id=doc["round_id"],
        height=int(doc["height"]),
        slot=int(doc.get("slot", 0)),
        block_hash=doc.get("block_hash", ""),
        proposer_id=doc.get("proposer_id", ""),
        status=ROUND_STATUS.get(doc.get("status", ""), cpb.ROUND_STATUS_UNSPECIFIED),
        approval_count=int(doc.get("approval_count", 0)),
        rejection_count=int(doc.get("rejection_count", 0)),
        validator_count=int(doc.get("validator_count", 0)),
        required_approvals=int(doc.get("required_approvals", 0)),
    )
    for vote in doc.get("votes", []):
        result.votes.add(
            validator_id=vote["validator_id"],
            decision=pb.VOTE_DECISION_APPROVE,
            signature=vote.get("signature", ""),
            vote_time=optional_timestamp(vote.get("vote_time")),
        )
    for name in ("start_time", "end_time"):
        value = optional_timestamp(doc.get(name))
        if value is not None:
            getattr(result, name).CopyFrom(value)
    return result


def current_round(view: RoundView, validators: ValidatorSet, started_ns: int) -> cpb.ConsensusRound:
    """The round in progress on the next height."""
    started = timestamp_pb2.Timestamp()
    started.FromNanoseconds(started_ns)
    return cpb.ConsensusRound(
        height=view.height,
        slot=view.round,
        block_hash=view.block_hash,
        proposer_id=view.proposer_id,
        status=ROUND_STATUS.get(view.status, cpb.ROUND_STATUS_PENDING),
        approval_count=max(view.approvals, 0),
        validator_count=len(validators),
        required_approvals=validators.required_approvals,
        start_time=started,
    )


def leader_slot(slot: LeaderSlot) -> cpb.LeaderSlot:
    """A leader slot."""
    result = cpb.LeaderSlot(
        slot=slot.height,
        epoch=slot.epoch,
        primary_id=slot.primary_id,
        fallback_ids=list(slot.fallback_ids),
    )
    result.start_time.FromNanoseconds(slot.start_ns)
    if slot.winner_id:
        result.winner_id = slot.winner_id
        result.block_height = slot.height
        result.outcome = (
            cpb.SLOT_OUTCOME_PRIMARY
            if slot.winner_id == slot.primary_id
            else cpb.SLOT_OUTCOME_FALLBACK
        )
    return result


def vote_proto(doc: Doc) -> cpb.ConsensusVote:
    """A consensus vote kept from a final block."""
    vote = cpb.ConsensusVote(
        voter_id=doc["voter_id"],
        vote_type=int(doc["vote_type"]),  # type: ignore[arg-type]
        target_id=doc["target_id"],
        decision=int(doc["decision"]),  # type: ignore[arg-type]
        reasoning=doc.get("reasoning") or "",
        slot=int(doc.get("slot") or 0),
        public_key=doc.get("public_key") or "",
        signature=doc.get("signature") or "",
        tx_hash=doc["_id"],
        block_height=int(doc["block_height"]),
    )
    vote_time = optional_timestamp(doc.get("vote_time"))
    if vote_time is not None:
        vote.vote_time.CopyFrom(vote_time)
    return vote


def vote_filter(request: cpb.ListConsensusVotesRequest) -> VoteFilter:
    """What a ListConsensusVotes request asks for."""
    return VoteFilter(
        vote_type=int(request.vote_type),
        target_id=request.target_id,
        voter_id=request.voter_id,
        slot_from=request.slot_from,
        slot_to=request.slot_to or None,
    )
