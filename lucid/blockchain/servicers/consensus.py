"""ConsensusService: PoOT status, participants, votes, task proofs, credits, leaders, and
the validator-to-validator rpcs (propose, approve, commit, sync, relay)."""

from __future__ import annotations

import time
from typing import Any

from google.protobuf import timestamp_pb2

from lucid.blockchain import convert, poot, votes
from lucid.blockchain.consensus import RoundView
from lucid.blockchain.node import ChainNode, Ready
from lucid.blockchain.reads import ChainReads
from lucid.blockchain.store.chain import RoundFilter
from lucid.blockchain.sync import MAX_SYNC_BYTES
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.blockchain.v1 import consensus_pb2_grpc
from lucid.runtime import paging
from lucid.runtime.context import current_principal
from lucid.runtime.errors import LucidError
from lucid.runtime.wire import duration

ACTIVE_WITHIN_S = 30.0


def _wait_s(context: Any) -> float | None:
    """How long the caller still waits for the answer (its deadline), if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else float(remaining)


class ConsensusServicer(consensus_pb2_grpc.ConsensusServiceServicer):
    """Consensus of one validator."""

    def __init__(self, node: ChainNode, reads: ChainReads) -> None:
        self.node = node
        self.reads = reads

    # -- reads ---------------------------------------------------------------------------

    def _current_round(self, ready: Ready, view: RoundView | None) -> cpb.ConsensusRound | None:
        if view is None or view.height != ready.ledger.tip.height + 1:
            return None
        started_ns = time.time_ns() - int((time.monotonic() - view.started) * 1e9)
        return convert.current_round(view, ready.validators, started_ns)

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
        where = RoundFilter(
            height_from=request.height_from,
            height_to=request.height_to or None,
            status=convert.ROUND_NAMES.get(request.status, "") if request.status else None,
        )
        page = paging.page(request)
        docs, total = await self.reads.rounds_page(where, offset=page.offset, limit=page.size)
        return cpb.ListConsensusHistoryResponse(
            rounds=[convert.round_proto(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    async def GetWorkCredits(
        self, request: cpb.GetWorkCreditsRequest, context: Any
    ) -> cpb.GetWorkCreditsResponse:
        self.node.require()
        now = self.node.clock.now()
        current = poot.epoch_of_slot(poot.task_slot(now))
        epoch = request.epoch if request.HasField("epoch") else current
        until = min(now, poot.epoch_end(epoch))
        facts = await self.reads.task_facts(poot.micros(until))
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
        slots = await self.reads.leader_slots(first, count)
        return cpb.GetLeaderScheduleResponse(
            current_slot=following, slots=[convert.leader_slot(s) for s in slots]
        )

    async def ListConsensusVotes(
        self, request: cpb.ListConsensusVotesRequest, context: Any
    ) -> cpb.ListConsensusVotesResponse:
        page = paging.page(request)
        docs, total, tally = await votes.votes_page(
            self.node, convert.vote_filter(request), offset=page.offset, limit=page.size
        )
        return cpb.ListConsensusVotesResponse(
            votes=[convert.vote_proto(d) for d in docs],
            tally=cpb.VoteTally(
                approve_count=tally.approve,
                reject_count=tally.reject,
                abstain_count=tally.abstain,
            ),
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    # -- submissions -----------------------------------------------------------------------

    async def SubmitConsensusVote(
        self, request: cpb.SubmitConsensusVoteRequest, context: Any
    ) -> cpb.SubmitConsensusVoteResponse:
        ready = self.node.require()
        caller = current_principal()
        acting_service = caller.user is None and not caller.relayed
        sender = votes.Voter(service=caller.peer.name if acting_service else "")
        doc, view = await votes.submit_vote(self.node, request, sender)
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
