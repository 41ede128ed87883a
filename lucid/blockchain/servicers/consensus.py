"""ConsensusService: PoOT status, participants, votes, task proofs, credits, leaders, and
the validator-to-validator rpcs (propose, approve, commit, sync, relay)."""

from __future__ import annotations

import time
from datetime import UTC
from typing import Any

from google.protobuf import timestamp_pb2

from lucid.blockchain import poot
from lucid.blockchain.consensus import RoundView
from lucid.blockchain.keys import verify_signature
from lucid.blockchain.node import ChainNode, Ready
from lucid.blockchain.repository import VOTES, Doc, utc
from lucid.blockchain.sync import MAX_SYNC_BYTES
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.blockchain.v1 import consensus_pb2_grpc
from lucid.lib import canonical
from lucid.lib.ids import new_id
from lucid.runtime import paging
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.wire import duration, optional_timestamp

ROUND_STATUS = {
    "pending": cpb.ROUND_STATUS_PENDING,
    "approved": cpb.ROUND_STATUS_APPROVED,
    "rejected": cpb.ROUND_STATUS_REJECTED,
    "failed": cpb.ROUND_STATUS_FAILED,
}
ROUND_NAMES = {number: name for name, number in ROUND_STATUS.items()}
ACTIVE_WITHIN_S = 30.0


def vote_message(request: cpb.SubmitConsensusVoteRequest) -> bytes:
    """What a consensus vote's signature covers: every field but the signature."""
    return canonical.encode_message(canonical.VOTE_TAG, request, exclude=frozenset({"signature"}))


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


def _wait_s(context: Any) -> float | None:
    """How long the caller still waits for the answer (its deadline), if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else float(remaining)


class ConsensusServicer(consensus_pb2_grpc.ConsensusServiceServicer):
    """Consensus of one validator."""

    def __init__(self, node: ChainNode) -> None:
        self.node = node

    # -- reads ---------------------------------------------------------------------------

    def _current_round(self, ready: Ready, view: RoundView | None) -> cpb.ConsensusRound | None:
        if view is None or view.height != ready.ledger.tip.height + 1:
            return None
        started = timestamp_pb2.Timestamp()
        started.FromNanoseconds(time.time_ns() - int((time.monotonic() - view.started) * 1e9))
        return cpb.ConsensusRound(
            height=view.height,
            slot=view.round,
            block_hash=view.block_hash,
            proposer_id=view.proposer_id,
            status=ROUND_STATUS.get(view.status, cpb.ROUND_STATUS_PENDING),
            approval_count=max(view.approvals, 0),
            validator_count=len(ready.validators),
            required_approvals=ready.validators.required_approvals,
            start_time=started,
        )

    async def GetConsensusStatus(
        self, request: cpb.GetConsensusStatusRequest, context: Any
    ) -> cpb.GetConsensusStatusResponse:
        ready = self.node.require()
        ledger = ready.ledger
        schedule = await ledger.schedule()
        response = cpb.GetConsensusStatusResponse(
            current_slot=ledger.tip.height + 1,
            current_epoch=poot.epoch_of_slot(poot.task_slot(self.node.clock.now())),
            current_leader_id=schedule.leader(max(0, ledger.round_at())),
            validator_count=len(ready.validators),
            required_approvals=ready.validators.required_approvals,
            voting_threshold=2 / 3,
            block_interval=duration(self.node.config.block_interval_s),
            leader_timeout=duration(self.node.config.leader_timeout_s),
            final_height=ledger.tip.height,
        )
        current = self._current_round(ready, ready.engine.view)
        if current is not None:
            response.current_round.CopyFrom(current)
        return response

    async def ListConsensusParticipants(
        self, request: cpb.ListConsensusParticipantsRequest, context: Any
    ) -> cpb.ListConsensusParticipantsResponse:
        ready = self.node.require()
        genesis_time = timestamp_pb2.Timestamp()
        genesis_time.CopyFrom(ready.ledger.genesis.header.block_time)
        seen = {c.validator_id: c.state for c in self.node.peers}
        now = time.time()
        validators = []
        for member in ready.validators:
            validator = cpb.Validator(
                validator_id=member.validator_id,
                public_key=member.public_key,
                node_id=poot.validator_node_id(member.public_key),
                voting_power=1,
                join_time=genesis_time,
            )
            if member.validator_id == self.node.validator_id:
                validator.status = cpb.VALIDATOR_STATUS_ACTIVE
                validator.last_seen_time.FromNanoseconds(time.time_ns())
            else:
                state = seen.get(member.validator_id)
                active = (
                    state is not None
                    and state.connected
                    and now - state.last_seen < ACTIVE_WITHIN_S
                )
                validator.status = (
                    cpb.VALIDATOR_STATUS_ACTIVE if active else cpb.VALIDATOR_STATUS_INACTIVE
                )
                if state is not None and state.last_seen:
                    validator.last_seen_time.FromNanoseconds(int(state.last_seen * 1e9))
            if request.status in (cpb.VALIDATOR_STATUS_UNSPECIFIED, validator.status):
                validators.append(validator)
        page = paging.page(request)
        shown = page.window(validators)
        return cpb.ListConsensusParticipantsResponse(
            validators=shown,
            required_approvals=ready.validators.required_approvals,
            next_page_token=page.next_token(len(shown), len(validators)),
            total_size=len(validators),
        )

    async def ListConsensusHistory(
        self, request: cpb.ListConsensusHistoryRequest, context: Any
    ) -> cpb.ListConsensusHistoryResponse:
        self.node.require()
        query: Doc = {}
        if request.status:
            query["status"] = ROUND_NAMES.get(request.status, "")
        heights: Doc = {"$gte": request.height_from}
        if request.height_to:
            heights["$lte"] = request.height_to
        query["height"] = heights
        page = paging.page(request)
        total = await self.node.repo.count_rounds(query)
        docs = await self.node.repo.round_docs(query, skip=page.offset, limit=page.size)
        return cpb.ListConsensusHistoryResponse(
            rounds=[round_proto(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    async def GetWorkCredits(
        self, request: cpb.GetWorkCreditsRequest, context: Any
    ) -> cpb.GetWorkCreditsResponse:
        ledger = self.node.require().ledger
        now = self.node.clock.now()
        current = poot.epoch_of_slot(poot.task_slot(now))
        epoch = request.epoch if request.HasField("epoch") else current
        until = min(now, poot.epoch_end(epoch))
        facts = [
            poot.TaskFacts.from_doc(d)
            for d in await ledger.repo.task_facts(
                poot.micros(until) - poot.WINDOW_US, poot.micros(until), ledger.tip.height
            )
        ]
        by_pool = request.entity_type == cpb.ENTITY_TYPE_POOL
        ranked = poot.ranked(poot.tallies(facts, by_pool=by_pool).values())
        entity_type = cpb.ENTITY_TYPE_POOL if by_pool else cpb.ENTITY_TYPE_NODE
        tallies = []
        rank = 0
        for tally in ranked:
            rank += 1 if tally.eligible else 0
            if request.entity_id and tally.entity_id != request.entity_id:
                continue
            entry = cpb.WorkTally(
                epoch=epoch,
                entity_id=tally.entity_id,
                entity_type=entity_type,
                relay_credits=tally.relay_credits,
                storage_credits=tally.storage_credits,
                validation_credits=tally.validation_credits,
                credits=tally.credits,
                uptime_score=tally.uptime_score,
                live_score=tally.live_score,
                rank=rank if tally.eligible else 0,
                eligible=tally.eligible,
            )
            entry.update_time.FromDatetime(now)
            tallies.append(entry)
        page = paging.page(request, scope=epoch)
        shown = page.window(tallies)
        return cpb.GetWorkCreditsResponse(
            epoch=epoch,
            tallies=shown,
            next_page_token=page.next_token(len(shown), len(tallies)),
            total_size=len(tallies),
        )

    async def GetLeaderSchedule(
        self, request: cpb.GetLeaderScheduleRequest, context: Any
    ) -> cpb.GetLeaderScheduleResponse:
        ledger = self.node.require().ledger
        following = ledger.tip.height + 1
        count = request.count or 10
        first = (
            request.slot_from if request.HasField("slot_from") else max(1, following - count + 1)
        )
        response = cpb.GetLeaderScheduleResponse(current_slot=following)
        interval_ns = int(self.node.config.block_interval_s * 1e9)
        for height in range(max(1, first), min(first + count, following + 1)):
            schedule = await ledger.schedule_at(height)
            parent = await ledger.repo.block_doc(height=height - 1)
            if schedule is None or parent is None:
                break
            slot = cpb.LeaderSlot(
                slot=height,
                epoch=poot.epoch_of_slot(
                    poot.task_slot(utc(parent["block_time"]) or self.node.clock.now())
                ),
                primary_id=schedule.primary,
                fallback_ids=list(schedule.fallbacks),
            )
            slot.start_time.FromNanoseconds(
                int(parent["block_time_s"]) * 1_000_000_000
                + int(parent["block_time_nanos"])
                + interval_ns
            )
            block = await ledger.repo.block_doc(height=height)
            if block is not None:
                slot.winner_id = block["proposer_id"]
                slot.block_height = height
                slot.outcome = (
                    cpb.SLOT_OUTCOME_PRIMARY
                    if block["proposer_id"] == schedule.primary
                    else cpb.SLOT_OUTCOME_FALLBACK
                )
            response.slots.append(slot)
        return response

    # -- submissions -----------------------------------------------------------------------

    async def SubmitConsensusVote(
        self, request: cpb.SubmitConsensusVoteRequest, context: Any
    ) -> cpb.SubmitConsensusVoteResponse:
        ready = self.node.require()
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
        doc, _ = await self.node.submit_record(
            VOTES, doc, body, f"{request.voter_id} already voted on {request.target_id}"
        )
        response = cpb.SubmitConsensusVoteResponse(
            vote_id=doc["vote_id"], accepted=True, vote_weight=1.0, tx_hash=doc.get("tx_hash", "")
        )
        current = self._current_round(ready, view)
        if current is not None:
            response.round.CopyFrom(current)
        return response

    async def SubmitTaskProof(
        self, request: cpb.SubmitTaskProofRequest, context: Any
    ) -> cpb.SubmitTaskProofResponse:
        doc, _ = await self.node.submit_task_proof(request.proof)
        return cpb.SubmitTaskProofResponse(
            proof_id=doc["proof_id"], accepted=True, epoch=poot.epoch_of_slot(int(doc["slot"]))
        )

    # -- validator to validator ---------------------------------------------------------

    async def ProposeBlock(
        self, request: cpb.ProposeBlockRequest, context: Any
    ) -> cpb.ProposeBlockResponse:
        return await self.node.require().engine.handle_propose(request, _wait_s(context))

    async def ApproveBlock(
        self, request: cpb.ApproveBlockRequest, context: Any
    ) -> cpb.ApproveBlockResponse:
        return await self.node.require().engine.handle_approve(request, _wait_s(context))

    async def CommitBlock(
        self, request: cpb.CommitBlockRequest, context: Any
    ) -> cpb.CommitBlockResponse:
        ready = self.node.require()
        committed, reason = await ready.engine.commit_final(request.block)
        return cpb.CommitBlockResponse(
            committed=committed, height=ready.ledger.tip.height, reason=reason
        )

    async def SyncBlocks(
        self, request: cpb.SyncBlocksRequest, context: Any
    ) -> cpb.SyncBlocksResponse:
        ledger = self.node.require().ledger
        limit = request.max_blocks or 100
        response = cpb.SyncBlocksResponse(final_height=ledger.tip.height)
        size = 0
        height = request.from_height
        while height <= ledger.tip.height and len(response.blocks) < limit:
            block = await ledger.block(height=height, with_transactions=True)
            if block is None:
                break
            size += block.ByteSize()
            if response.blocks and size > MAX_SYNC_BYTES:
                break
            response.blocks.append(block)
            height += 1
        response.has_more = height <= ledger.tip.height
        return response

    async def RelayTransactions(
        self, request: cpb.RelayTransactionsRequest, context: Any
    ) -> cpb.RelayTransactionsResponse:
        ledger = self.node.require().ledger
        response = cpb.RelayTransactionsResponse()
        for signed in request.transactions:
            try:
                _, new = await ledger.accept(signed)
            except LucidError:
                response.refused_count += 1
                continue
            if new:
                response.accepted_count += 1
            else:
                response.known_count += 1
        return response
