"""The consensus of one validator: leading rounds, voting, committing final blocks.

Rounds of the next height are counted from the tip's block time plus the block
interval, one per leader timeout; round r is led by entry r of the height's leader
schedule (primary, then fallbacks, then over again). A leader leads its round only
when a block is due — a transaction other than an uptime beacon waits, or a block
is locked — so an idle chain makes no empty blocks, and a transaction that arrives
after a quiet spell is proposed at once (its round has long started).

A round has two phases (Tendermint's prevote and precommit, here *prevote* and
*approval*):

1. The leader proposes a block — the one it or a peer is locked on, with the
   prevotes that locked it, or else a fresh one from its pool — and collects
   prevotes (``ProposeBlock``).
2. With prevotes of the round from two thirds, it asks for approvals
   (``ApproveBlock``); approving locks a validator on the block at that round.
   Approvals of the round from two thirds make the block final; the leader appends
   it and sends it to its peers (``CommitBlock``).

A validator's rules, kept across restarts (its ballots and lock are stored before
it answers): at most one prevote and one approval per round; never a vote in a
round below one it already voted in; approve only with prevotes of that very round
from two thirds; prevote a block other than the one it is locked on only when shown
prevotes for it from a round after its lock. Two blocks of one height can then
never both be final: approvals of a round need prevotes of that round from two
thirds, and any two thirds share a validator that would have to break a rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import nacl.signing
from google.protobuf import timestamp_pb2
from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.blockchain import anchors, blocks
from lucid.blockchain.config import MAX_BLOCK_BYTES, ChainConfig
from lucid.blockchain.keys import ValidatorSet, public_key_hex, sign_hex, verify_signature
from lucid.blockchain.ledger import Ledger
from lucid.blockchain.peers import Peers
from lucid.blockchain.store.chain import Doc
from lucid.blockchain.transactions import CheckedTransaction
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.common.v1 import proofs_pb2
from lucid.lib import canonical
from lucid.runtime.storeerrors import Backoff, is_transient

log = logging.getLogger("lucid.blockchain.consensus")
T = TypeVar("T")

PREVOTE = "prevote"
APPROVAL = "approval"
CHECKED_CACHE = 16
"""Candidate blocks whose checks are remembered until the tip moves."""
STALE = "the leader stopped waiting before this validator got to it (its round is over)"


@dataclass(frozen=True)
class Lock:
    """The block a validator approved last at a height, and the prevotes it saw."""

    round: int
    block: pb.Block
    certificate: cpb.PrevoteCertificate


class VoteRefusedError(Exception):
    """Why a validator does not vote (and the block it is locked on, if that is why)."""

    def __init__(self, reason: str, lock: Lock | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lock = lock


@dataclass
class RoundView:
    """The round of the next height this validator last took part in (for status)."""

    height: int
    round: int
    block_hash: str
    proposer_id: str
    started: float
    prevotes: int = 0
    approvals: int = 0
    status: str = "pending"


class Engine:
    """Leads, votes and commits for one validator."""

    def __init__(
        self,
        *,
        config: ChainConfig,
        ledger: Ledger,
        key: nacl.signing.SigningKey,
        validators: ValidatorSet,
        peers: Peers,
        request_sync: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.repo = ledger.repo
        self.key = key
        self.public_key = public_key_hex(key)
        self.validators = validators
        self.peers = peers
        self.request_sync = request_sync
        self.me = config.validator_id
        self.wake = asyncio.Event()
        self._led: set[tuple[int, int]] = set()
        self._known: dict[int, Lock] = {}
        self._checked: dict[str, tuple[list[CheckedTransaction], list[str]]] = {}
        self.view: RoundView | None = None
        ledger.listeners.append(self._on_block)
        ledger.on_new_transaction.append(lambda _: self.wake.set())

    # -- helpers -------------------------------------------------------------------

    @property
    def quorum(self) -> int:
        """Votes of one round that decide: the least a with 3a ≥ 2N."""
        return self.validators.required_approvals

    def _stamp(self) -> timestamp_pb2.Timestamp:
        value = timestamp_pb2.Timestamp()
        value.FromDatetime(self.ledger.clock.now())
        return value

    async def _on_block(self, block: pb.Block) -> None:
        height = block.header.height
        self._known = {h: lock for h, lock in self._known.items() if h > height}
        self._checked.clear()
        self._led = {(h, r) for h, r in self._led if h > height}
        if self.view is not None and self.view.height <= height:
            self.view = None
        self.wake.set()

    async def _validated(self, block: pb.Block) -> tuple[list[CheckedTransaction], list[str]]:
        """The checks of a candidate block (cached per content until the tip moves: the same
        header may come with other transactions)."""
        bare = blocks.as_proposed(
            block, [pb.Transaction(tx_hash=t.tx_hash, signed=t.signed) for t in block.transactions]
        )
        key = canonical.sha256_hex(bare.SerializeToString(deterministic=True))
        cached = self._checked.get(key)
        if cached is None:
            cached = await self.ledger.check_candidate(block)
            self._checked[key] = cached
            while len(self._checked) > CHECKED_CACHE:  # a long stall proposes a block a round
                self._checked.pop(next(iter(self._checked)))
        return cached

    def certificate_errors(self, cert: cpb.PrevoteCertificate, height: int) -> list[str]:
        """What is wrong with a prevote certificate for a height."""
        if cert.height != height:
            return [f"the prevotes are for height {cert.height}"]
        message = canonical.prevote_message(cert.height, cert.round, cert.block_hash)
        valid: set[str] = set()
        for vote in cert.prevotes:
            key = self.validators.key_of(vote.validator_id)
            if (
                key is not None
                and key == vote.public_key
                and vote.height == cert.height
                and vote.round == cert.round
                and vote.block_hash == cert.block_hash
                and verify_signature(key, message, vote.signature)
            ):
                valid.add(vote.validator_id)
        if len(valid) < self.quorum:
            return [f"{len(valid)} valid prevotes; {self.quorum} needed"]
        return []

    async def lock_of(self, height: int) -> Lock | None:
        """This validator's lock at a height."""
        state = await self.repo.voting_state(height)
        if not state or not state.get("lock"):
            return None
        stored = state["lock"]
        block = pb.Block()
        block.ParseFromString(bytes(stored["block"]))
        cert = cpb.PrevoteCertificate()
        cert.ParseFromString(bytes(stored["certificate"]))
        return Lock(int(stored["round"]), block, cert)

    def _prevote(self, height: int, round_: int, block_hash: str) -> cpb.Prevote:
        return cpb.Prevote(
            validator_id=self.me,
            public_key=self.public_key,
            height=height,
            round=round_,
            block_hash=block_hash,
            signature=sign_hex(self.key, canonical.prevote_message(height, round_, block_hash)),
        )

    def _approval(self, height: int, round_: int, block_hash: str) -> proofs_pb2.ValidatorApproval:
        return proofs_pb2.ValidatorApproval(
            validator_id=self.me,
            public_key=self.public_key,
            signature=sign_hex(self.key, canonical.approval_message(height, round_, block_hash)),
            approve_time=self._stamp(),
            round=round_,
        )

    async def _record_ballot(self, height: int, phase: str, round_: int, block_hash: str) -> str:
        """Stores a vote before it is sent; returns the hash this validator voted for."""
        try:
            await self.repo.insert_ballot(
                {
                    "height": height,
                    "phase": phase,
                    "round": round_,
                    "block_hash": block_hash,
                    "time": self.ledger.clock.now(),
                }
            )
        except DuplicateKeyError:
            existing = await self.repo.ballot(height, phase, round_)
            return str(existing["block_hash"]) if existing else ""
        return block_hash

    def _refusal_height(self) -> int:
        return self.ledger.tip.height

    async def _check_height(self, height: int) -> None:
        tip = self.ledger.tip.height
        if height <= tip:
            raise VoteRefusedError(f"height {height} is already final here (tip {tip})")
        if height > tip + 1:
            self.request_sync()
            raise VoteRefusedError(f"behind: tip {tip}, syncing before voting on {height}")

    async def _check_round(self, height: int, round_: int, phase: str, block_hash: str) -> bool:
        """Whether this validator already voted for ``block_hash`` in this phase and round;
        refuses when it voted for another block or in a later round."""
        earlier = await self.repo.ballot(height, phase, round_)
        if earlier is not None:
            if earlier["block_hash"] == block_hash:
                return True
            raise VoteRefusedError(f"already voted for another block in round {round_} ({phase})")
        state = await self.repo.voting_state(height) or {}
        if int(state.get("round_high", -1)) > round_:
            raise VoteRefusedError(f"already voted in round {state['round_high']}")
        return False

    async def _validate(self, block: pb.Block) -> list[CheckedTransaction]:
        checked, errors = await self._validated(block)
        if errors:
            raise VoteRefusedError("; ".join(errors))
        return checked

    async def _vote(self, height: int, phase: str, round_: int, block_hash: str) -> None:
        voted = await self._record_ballot(height, phase, round_, block_hash)
        if voted != block_hash:
            raise VoteRefusedError(f"already voted for another block in round {round_} ({phase})")

    # -- phase 1: prevote ------------------------------------------------------------

    def _deadline(self, wait_s: float | None) -> float | None:
        """The loop time by which the caller stops waiting (``None``: it waits for ever)."""
        if wait_s is None:
            return None
        return asyncio.get_running_loop().time() + wait_s

    def _past(self, deadline: float | None) -> bool:
        return deadline is not None and asyncio.get_running_loop().time() >= deadline

    async def handle_propose(
        self, request: cpb.ProposeBlockRequest, wait_s: float | None = None
    ) -> cpb.ProposeBlockResponse:
        """Answers a proposal with a prevote or the reason for refusing it. ``wait_s``: how
        long the leader waits for the answer (its rpc deadline); a proposal still queued
        for the ledger lock when its leader stopped waiting is skipped unchecked, no vote
        stored (its round is over: checking it would only delay the next round's votes)."""
        deadline = self._deadline(wait_s)
        async with self.ledger.lock:
            try:
                if self._past(deadline):
                    raise VoteRefusedError(STALE)
                return await self._propose(request)
            except VoteRefusedError as refusal:
                response = cpb.ProposeBlockResponse(
                    approved=False,
                    validator_id=self.me,
                    reason=refusal.reason,
                    height=self._refusal_height(),
                )
                if refusal.lock is not None:
                    response.locked_block.CopyFrom(refusal.lock.block)
                    response.locked_certificate.CopyFrom(refusal.lock.certificate)
                return response

    async def _propose(self, request: cpb.ProposeBlockRequest) -> cpb.ProposeBlockResponse:
        block = request.block
        height, round_ = block.header.height, request.round
        await self._check_height(height)
        schedule = await self.ledger.schedule()
        if request.leader_id != schedule.leader(round_):
            raise VoteRefusedError(f"{request.leader_id} does not lead round {round_}")
        if round_ > self.ledger.round_at() + 1:
            raise VoteRefusedError(f"round {round_} has not started")
        if await self._check_round(height, round_, PREVOTE, block.hash):
            return self._prevoted(height, round_, block.hash)
        lock = await self.lock_of(height)
        if lock is not None and lock.block.hash != block.hash:
            justify = request.justify if request.HasField("justify") else None
            moves = (
                justify is not None
                and justify.block_hash == block.hash
                and lock.round < justify.round < round_
                and not self.certificate_errors(justify, height)
            )
            if not moves:
                reason = f"locked on {lock.block.hash} since round {lock.round}"
                raise VoteRefusedError(reason, lock)
        checked = await self._validate(block)
        await self._vote(height, PREVOTE, round_, block.hash)
        await self.repo.save_voting_state(height, {"round_high": round_})
        await anchors.mark_processing(self.repo, [c.tx_hash for c in checked if c.session_id])
        self.note_proposal(block, round_)
        return self._prevoted(height, round_, block.hash)

    def _prevoted(self, height: int, round_: int, block_hash: str) -> cpb.ProposeBlockResponse:
        return cpb.ProposeBlockResponse(
            approved=True,
            prevote=self._prevote(height, round_, block_hash),
            validator_id=self.me,
            height=self._refusal_height(),
        )

    # -- phase 2: approval -----------------------------------------------------------

    async def handle_approve(
        self, request: cpb.ApproveBlockRequest, wait_s: float | None = None
    ) -> cpb.ApproveBlockResponse:
        """Answers prevotes of two thirds with an approval (and a lock) or a refusal
        (``wait_s`` as for ``handle_propose``: a request its leader gave up on is skipped)."""
        deadline = self._deadline(wait_s)
        async with self.ledger.lock:
            try:
                if self._past(deadline):
                    raise VoteRefusedError(STALE)
                return await self._approve(request)
            except VoteRefusedError as refusal:
                return cpb.ApproveBlockResponse(
                    approved=False,
                    validator_id=self.me,
                    reason=refusal.reason,
                    height=self._refusal_height(),
                )

    async def _approve(self, request: cpb.ApproveBlockRequest) -> cpb.ApproveBlockResponse:
        block, cert = request.block, request.certificate
        height, round_ = block.header.height, request.round
        await self._check_height(height)
        if cert.round != round_ or cert.block_hash != block.hash:
            raise VoteRefusedError("the prevotes are for another round or block")
        for problem in self.certificate_errors(cert, height):
            raise VoteRefusedError(problem)
        if await self._check_round(height, round_, APPROVAL, block.hash):
            return self._approved(height, round_, block.hash)
        await self._validate(block)
        await self._vote(height, APPROVAL, round_, block.hash)
        await self.repo.save_voting_state(
            height,
            {
                "round_high": round_,
                "lock": {
                    "round": round_,
                    "block_hash": block.hash,
                    "block": block.SerializeToString(),
                    "certificate": cert.SerializeToString(),
                },
            },
        )
        return self._approved(height, round_, block.hash)

    def _approved(self, height: int, round_: int, block_hash: str) -> cpb.ApproveBlockResponse:
        return cpb.ApproveBlockResponse(
            approved=True,
            approval=self._approval(height, round_, block_hash),
            validator_id=self.me,
            height=self._refusal_height(),
        )

    # -- final blocks -------------------------------------------------------------------

    async def commit_final(self, block: pb.Block) -> tuple[bool, str]:
        """Appends a final block on top of the tip after checking it and its approvals."""
        async with self.ledger.lock:
            return await self._commit(block)

    async def _commit(self, block: pb.Block) -> tuple[bool, str]:
        height = block.header.height
        tip = self.ledger.tip
        if height <= tip.height:
            stored = await self.repo.block_doc(height=height)
            if stored is not None and stored["hash"] == block.hash:
                return True, ""
            return False, f"another block is final at height {height}"
        if height > tip.height + 1:
            self.request_sync()
            return False, f"gap: tip {tip.height}, block {height}; syncing"
        errors = blocks.check_approvals(block, self.validators)
        checked, block_errors = await self._validated(block)
        errors += block_errors
        if errors:
            log.warning("refused a final block", extra={"height": height, "errors": errors})
            return False, "; ".join(errors)
        final = pb.Block()
        final.CopyFrom(block)
        final.status = pb.BLOCK_STATUS_CONFIRMED
        final.final = True
        await self.ledger.append(final, checked)
        return True, ""

    # -- leading -------------------------------------------------------------------------

    async def run(self) -> None:
        """Leads the rounds that fall to this validator, forever (a step that met a busy
        store is tried again after a short backoff, not a whole leader timeout)."""
        backoff = Backoff(max_s=self.config.leader_timeout_s)
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except PyMongoError as exc:
                if is_transient(exc):
                    log.warning(
                        "consensus step deferred: the store is busy", extra={"error": str(exc)}
                    )
                    await asyncio.sleep(backoff.next_s())
                    continue
                log.exception("a consensus step failed")
                await asyncio.sleep(self.config.leader_timeout_s)
            except Exception:
                log.exception("a consensus step failed")
                await asyncio.sleep(self.config.leader_timeout_s)
            else:
                backoff.reset()
            delay = min(self.ledger.next_round_in(), self.config.leader_timeout_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=max(delay, 0.005))
            self.wake.clear()

    async def step(self) -> None:
        """Leads the current round if it is this validator's and a block is due."""
        tip = self.ledger.tip
        height = tip.height + 1
        round_ = self.ledger.round_at()
        if round_ < 0 or (height, round_) in self._led:
            return
        schedule = await self.ledger.schedule()
        if schedule.leader(round_) != self.me:
            return
        choice = await self._proposal(height, round_)
        if choice is None:
            return
        self._led.add((height, round_))
        await self._lead(height, round_, *choice)

    async def _proposal(
        self, height: int, round_: int
    ) -> tuple[pb.Block, cpb.PrevoteCertificate | None] | None:
        best = await self.lock_of(height)
        known = self._known.get(height)
        if known is not None and (best is None or known.round > best.round):
            best = known
        if best is not None:
            return best.block, best.certificate
        if not await self.ledger.has_work():
            return None
        chosen = await self.ledger.select_for_block()
        if not chosen:
            return None
        tip = self.ledger.tip
        block_time = max(self.ledger.now_ns(), tip.time_ns + 1)
        while True:
            block = blocks.build(
                parent=tip,
                transactions=chosen,
                proposer_id=self.me,
                key=self.key,
                slot=round_,
                block_time_ns=block_time,
            )
            if block.size_bytes <= MAX_BLOCK_BYTES or len(chosen) == 1:
                return block, None
            chosen = chosen[: max(1, len(chosen) * 9 // 10)]

    async def _gather(
        self,
        local: Callable[[], Awaitable[T]],
        remote: Callable[[Any], Awaitable[T | None]],
        accepted: Callable[[T], bool],
    ) -> tuple[list[T], list[T]]:
        """Asks this validator and every peer; returns as soon as a quorum accepted."""
        tasks: list[asyncio.Task[Any]] = [asyncio.ensure_future(local())]
        tasks += [asyncio.ensure_future(remote(client)) for client in self.peers]
        good: list[T] = []
        answers: list[T] = []
        pending = set(tasks)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.leader_timeout_s
        while pending and len(good) < self.quorum:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            done, pending = await asyncio.wait(
                pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task.cancelled() or task.exception() is not None:
                    if task.exception() is not None:
                        log.warning("a vote failed", exc_info=task.exception())
                    continue
                answer = task.result()
                if answer is None:
                    continue
                answers.append(answer)
                if accepted(answer):
                    good.append(answer)
        for task in pending:
            self.peers.adopt(task)
        return good, answers

    def _learn(self, responses: Sequence[cpb.ProposeBlockResponse], height: int) -> None:
        for response in responses:
            if not response.HasField("locked_certificate"):
                continue
            cert, block = response.locked_certificate, response.locked_block
            if cert.block_hash != block.hash or self.certificate_errors(cert, height):
                continue
            known = self._known.get(height)
            if known is None or cert.round > known.round:
                self._known[height] = Lock(cert.round, block, cert)
                self.wake.set()

    async def _lead(
        self,
        height: int,
        round_: int,
        block: pb.Block,
        justify: cpb.PrevoteCertificate | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.view = RoundView(height, round_, block.hash, block.header.proposer_id, loop.time())
        request = cpb.ProposeBlockRequest(block=block, round=round_, leader_id=self.me)
        if justify is not None:
            request.justify.CopyFrom(justify)
        wait_s = self.config.leader_timeout_s  # how long _gather waits for the votes
        prevoted, answers = await self._gather(
            lambda: self.handle_propose(request, wait_s),
            lambda client: client.propose(request, wait_s),
            lambda r: r.approved,
        )
        self._learn(answers, height)
        self.view.prevotes = len(prevoted)
        if len(prevoted) < self.quorum:
            reasons = sorted({a.reason for a in answers if not a.approved})
            await self._round_failed(block, round_, len(prevoted), reasons)
            return
        cert = cpb.PrevoteCertificate(
            height=height,
            round=round_,
            block_hash=block.hash,
            prevotes=[r.prevote for r in prevoted],
        )
        approve = cpb.ApproveBlockRequest(block=block, round=round_, certificate=cert)
        approved, answers_2 = await self._gather(
            lambda: self.handle_approve(approve, wait_s),
            lambda client: client.approve(approve, wait_s),
            lambda r: r.approved,
        )
        self.view.approvals = len(approved)
        if len(approved) < self.quorum:
            reasons = sorted({a.reason for a in answers_2 if not a.approved})
            await self._round_failed(block, round_, len(approved), reasons)
            return
        final = pb.Block()
        final.CopyFrom(block)
        final.approvals.extend(sorted((r.approval for r in approved), key=lambda a: a.validator_id))
        final.validator_count = len(self.validators)
        committed, reason = await self.commit_final(final)
        if committed:
            self.peers.broadcast_commit(final)
        else:
            log.warning("could not commit own block", extra={"height": height, "reason": reason})

    async def _round_failed(
        self, block: pb.Block, round_: int, votes: int, reasons: list[str]
    ) -> None:
        if self.view is not None:
            self.view.status = "failed"
        log.info(
            "round failed",
            extra={
                "height": block.header.height,
                "round": round_,
                "votes": votes,
                "reasons": reasons,
            },
        )
        now = self.ledger.clock.now()
        doc: Doc = {
            "round_id": str(uuid.uuid4()),
            "height": block.header.height,
            "round": round_,
            "slot": block.header.slot,
            "block_hash": block.hash,
            "proposer_id": block.header.proposer_id,
            "status": "failed",
            "votes": [],
            "approval_count": votes,
            "rejection_count": len(self.validators) - votes,
            "validator_count": len(self.validators),
            "required_approvals": self.quorum,
            "start_time": now,
            "end_time": now,
            "reasons": reasons[:5],
        }
        with contextlib.suppress(Exception):
            await self.repo.insert_round(doc)

    def open_round(self, block_hash: str) -> RoundView | None:
        """The open round on a block of the next height, if this validator saw one."""
        if (
            self.view is not None
            and self.view.block_hash == block_hash
            and self.view.status == "pending"
        ):
            return self.view
        return None

    def note_proposal(self, block: pb.Block, round_: int) -> None:
        """Remembers the latest proposal of the next height (for status and votes)."""
        if self.view is None or (self.view.height, self.view.round) < (block.header.height, round_):
            loop = asyncio.get_running_loop()
            self.view = RoundView(
                block.header.height, round_, block.hash, block.header.proposer_id, loop.time()
            )
