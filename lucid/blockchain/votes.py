"""Consensus votes (``SubmitConsensusVote``): who may vote on what, what the signature
covers, and the vote recorded on the chain as a consensus-vote transaction.

- A block (or parameter) vote is a validator's: the voter is a validator of the set and
  signs with its key; a block vote needs an open round on that block. One per voter and
  target.
- A PoOT validation vote is a node's verdict on another node's task proof (spec 05 §1,
  "PoOT votes to cluster 02"; ``lucid.lib.pootvotes``): only the nodes cluster sends
  one (its mTLS identity, not a user and not relayed; it checks the voter's registered
  key and that the task was handed to the voter), and the signature verifies with the
  key in the vote. It counts in the task slot of its ``vote_time``, which may not lie
  ahead; one per voter, target and slot.

The identical vote sent again returns the stored one; another vote under the same key
is refused (ALREADY_EXISTS). The transaction carries the voter's key, time and
signature, so every validator checks the vote again from the block alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta

from lucid.blockchain import poot
from lucid.blockchain.config import TIME_TOLERANCE_S
from lucid.blockchain.consensus import RoundView
from lucid.blockchain.node import ChainNode
from lucid.blockchain.store.chain import POOT_VOTES, VOTES, Doc, VoteFilter
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import pootvotes
from lucid.lib.ids import new_id
from lucid.runtime.errors import ErrorCode, LucidError

NODES = "nodes"
"""The cluster whose service identity sends PoOT validation votes."""


def vote_message(request: cpb.SubmitConsensusVoteRequest) -> bytes:
    """What a consensus vote's signature covers: every field but the signature."""
    return pootvotes.signing_bytes(request)


@dataclass(frozen=True)
class Voter:
    """Who sends a vote: the mTLS service identity, when it acts as itself."""

    service: str
    """The calling cluster, or "" for a user or a call relayed for a client."""


async def submit_vote(
    node: ChainNode, request: cpb.SubmitConsensusVoteRequest, sender: Voter
) -> tuple[Doc, RoundView | None]:
    """Records a vote and its transaction; the round it voted in, for a block vote."""
    ready = node.require()
    poot_vote = request.vote_type == pb.VOTE_TYPE_POOT_VALIDATION
    if poot_vote:
        if sender.service != NODES:
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_PARTICIPANT,
                "PoOT validation votes come from the nodes cluster, which checks the voter",
            )
    elif ready.validators.key_of(request.voter_id) != request.public_key:
        raise LucidError(
            ErrorCode.ERROR_CODE_NOT_PARTICIPANT,
            f"{request.voter_id} is not a consensus participant with this key",
        )
    if not pootvotes.verifies(request):
        raise LucidError(
            ErrorCode.ERROR_CODE_CHAIN_SIGNATURE_INVALID, "the vote's signature does not verify"
        )
    vote_time = request.vote_time.ToDatetime(tzinfo=UTC)
    if poot_vote and vote_time > node.clock.now() + timedelta(seconds=TIME_TOLERANCE_S):
        raise LucidError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "the vote_time lies ahead")
    view = None
    if request.vote_type == pb.VOTE_TYPE_BLOCK:
        view = ready.engine.open_round(request.target_id)
        if view is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_NO_OPEN_ROUND,
                f"no consensus round is open on block {request.target_id}",
            )
    slot = poot.task_slot(vote_time)
    doc: Doc = {
        "vote_id": new_id(),
        "voter_id": request.voter_id,
        "vote_type": int(request.vote_type),
        "target_id": request.target_id,
        "decision": int(request.decision),
        "slot": slot,
        "signature": request.signature,
        "tx_hash": "",
        "vote_time": vote_time,
    }
    body = pb.TransactionBody(
        type=pb.TRANSACTION_TYPE_CONSENSUS_VOTE, consensus_vote=pootvotes.payload(request)
    )
    if poot_vote:
        kind, conflict = POOT_VOTES, f"in slot {slot} on node {request.target_id}"
    else:
        kind, conflict = VOTES, f"on {request.target_id}"
    doc, _ = await node.submit_record(
        kind, doc, body, f"{request.voter_id} already voted {conflict}"
    )
    return doc, view


@dataclass(frozen=True)
class Tally:
    """How the matching votes were cast."""

    approve: int
    reject: int
    abstain: int


async def votes_page(
    node: ChainNode, where: VoteFilter, *, offset: int, limit: int
) -> tuple[list[Doc], int, Tally]:
    """Votes in final blocks, newest first; how many match; their tally."""
    repo = node.require().ledger.repo
    docs = await repo.vote_fact_docs(where, skip=offset, limit=limit)
    tally = Tally(
        approve=await repo.count_votes(where, pb.VOTE_DECISION_APPROVE),
        reject=await repo.count_votes(where, pb.VOTE_DECISION_REJECT),
        abstain=await repo.count_votes(where, pb.VOTE_DECISION_ABSTAIN),
    )
    return docs, tally.approve + tally.reject + tally.abstain, tally
