"""One validator's replica of the chain: genesis, the tip, final blocks, the pending pool.

Blocks enter only final (with approvals of two thirds, checked by the caller) and
only on top of the tip, one at a time. Appending stores the block's transactions
first, then the block (the commit point: unique height and hash), then what follows
from it (transactions confirmed, anchorings confirmed, a round in the history); on
start the effects of the tip block are applied again, so a crash between the steps
leaves nothing half done. The pool holds transactions that keep every rule; a
leader takes them oldest first.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from pymongo.errors import DuplicateKeyError

from lucid.blockchain import anchors, blocks, genesis, poot, transactions
from lucid.blockchain.config import MAX_BLOCK_BYTES, MAX_BLOCK_TRANSACTIONS, ChainConfig
from lucid.blockchain.keys import ValidatorSet
from lucid.blockchain.store.chain import (
    CONFIRMED,
    FAILED,
    PENDING,
    Doc,
    Repository,
    RoundFilter,
    block_to_doc,
    doc_to_block,
    doc_to_signed,
    doc_to_transaction,
    tx_doc,
    utc,
)
from lucid.blockchain.transactions import CheckedTransaction
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.lib.clock import Clock
from lucid.runtime.errors import ErrorCode, LucidError

log = logging.getLogger("lucid.blockchain.ledger")

BLOCK_OVERHEAD_BYTES = 16 * 1024
"""Room left in a block for its header, signature and encoding overhead."""
CLEAR_MEMORY = 200_000
"""Transactions (and sessions) remembered as not yet in the chain; past it, forgotten."""


class ChainError(RuntimeError):
    """The stored chain cannot be followed (a foreign genesis, a broken tip)."""


class Ledger:
    """The chain as this validator holds it."""

    def __init__(
        self, repo: Repository, validators: ValidatorSet, config: ChainConfig, clock: Clock
    ) -> None:
        self.repo = repo
        self.validators = validators
        self.config = config
        self.clock = clock
        self.genesis = genesis.genesis_block(validators)
        self.tip = blocks.tip_of(self.genesis)
        self.lock = asyncio.Lock()
        """Held while a block is appended or voted on: the tip changes only under it."""
        self.listeners: list[Callable[[pb.Block], Awaitable[None]]] = []
        self.on_new_transaction: list[Callable[[CheckedTransaction], None]] = []
        self._schedule: tuple[str, poot.Schedule] | None = None
        self._recent: deque[str] = deque(maxlen=poot.RECENT_WINNERS)
        """Proposers of the last 16 blocks (the recent winners of the leader rule)."""
        self._facts: list[tuple[int, poot.TaskFacts]] = []
        """Task proofs of final blocks still in the work-credit window, with their height."""
        self._unconfirmed: set[str] = set()
        """Transactions the store showed in no final block (up to the tip of that moment) and
        that no block appended since holds: not in the chain. Only ``append`` puts a
        transaction into the chain, and it takes the block's out of here at the moment it
        moves the tip, so a candidate's transactions seen on their way into the pool need
        no second lookup each when a block of them is checked."""
        self._unanchored: set[str] = set()
        """Sessions known to have no anchor in the chain, kept the same way."""

    async def open(self) -> None:
        """Stores the genesis block on a fresh chain, checks it on an old one, finds the tip."""
        stored = await self.repo.block_doc(height=0)
        if stored is None:
            await self._store(self.genesis, list(self._genesis_txs()), self.genesis_time())
            stored = await self.repo.block_doc(height=0)
        if stored is None or stored["hash"] != self.genesis.hash:
            raise ChainError(
                "the stored genesis block is not the genesis of this validator set "
                "(another chain in the same database?)"
            )
        tip = await self.repo.tip_doc()
        assert tip is not None
        block = doc_to_block(tip)
        self.tip = blocks.tip_of(block)
        await self._apply(block, await self._stored_txs(block), utc(tip.get("final_time")))
        for height in range(max(1, self.tip.height - poot.RECENT_WINNERS + 1), self.tip.height + 1):
            doc = await self.repo.block_doc(height=height)
            if doc is not None:
                self._recent.append(doc["proposer_id"])
        end = self.tip.time_ns // 1000
        self._facts = [
            (int(doc["block_height"]), poot.TaskFacts.from_doc(doc))
            for doc in await self.repo.task_facts(end - poot.WINDOW_US, 2**62, self.tip.height)
        ]

    def genesis_time(self) -> datetime:
        """When the genesis block was made (its block time)."""
        return self.genesis.header.block_time.ToDatetime(tzinfo=self.clock.now().tzinfo)

    def _genesis_txs(self) -> list[CheckedTransaction]:
        return [
            transactions.check(t.signed, self.validators, genesis=True)
            for t in self.genesis.transactions
        ]

    async def _stored_txs(self, block: pb.Block) -> list[CheckedTransaction]:
        docs = await self.repo.tx_docs(block.tx_hashes)
        found = []
        for tx_hash in block.tx_hashes:
            doc = docs.get(tx_hash)
            if doc is not None:
                found.append(
                    transactions.check(
                        doc_to_signed(doc), self.validators, genesis=block.header.height == 0
                    )
                )
        return found

    # -- blocks ------------------------------------------------------------------------

    async def check_candidate(self, block: pb.Block) -> tuple[list[CheckedTransaction], list[str]]:
        """Everything that makes ``block`` a valid next block, approvals aside."""
        now = self.clock.now()
        errors = blocks.check_header(block, parent=self.tip, validators=self.validators, now=now)
        checked, tx_errors = blocks.check_transactions(block, self.validators, now=now)
        errors += tx_errors
        tip = self.tip
        tx_hashes = [t.tx_hash for t in checked if t.tx_hash not in self._unconfirmed]
        session_ids = [
            t.session_id for t in checked if t.session_id and t.session_id not in self._unanchored
        ]
        already, anchored = await asyncio.gather(  # the two kinds of lookups at once
            self.repo.confirmed_among(tx_hashes, tip.height),
            self.repo.anchored_sessions_among(session_ids),
        )
        self._remember_clear(
            tip,
            [h for h in tx_hashes if h not in already],
            [s for s in session_ids if s not in anchored],
        )
        if already:
            errors.append(f"transaction {sorted(already)[0]} is already in the chain")
        if anchored:
            errors.append(f"session {sorted(anchored)[0]} is already anchored")
        schedule = await self.schedule()
        if schedule.leader(block.header.slot) != block.header.proposer_id:
            errors.append(
                f"{block.header.proposer_id} is not the leader of round {block.header.slot}"
            )
        return checked, errors

    async def append(self, block: pb.Block, checked: Sequence[CheckedTransaction]) -> None:
        """Appends a final block on top of the tip (the caller holds ``lock``)."""
        if (
            block.header.height != self.tip.height + 1
            or block.header.previous_hash != self.tip.hash
        ):
            raise ChainError(f"block {block.header.height} does not extend the tip")
        now = self.clock.now()
        await self._store(block, list(checked), now)
        self.tip = blocks.tip_of(block)
        self._unconfirmed.difference_update(block.tx_hashes)  # with the tip: no await between
        self._unanchored.difference_update(c.session_id for c in checked if c.session_id)
        self._schedule = None
        await self._apply(block, list(checked), now)
        self._recent.append(block.header.proposer_id)
        self._facts += [(block.header.height, c.task) for c in checked if c.task is not None]
        end = self.tip.time_ns // 1000
        self._facts = [(h, f) for h, f in self._facts if f.proof_us > end - poot.WINDOW_US]
        for listener in self.listeners:
            try:
                await listener(block)
            except Exception:
                log.exception("a block listener failed")

    async def _store(
        self, block: pb.Block, checked: list[CheckedTransaction], now: datetime
    ) -> None:
        pooled = await self.repo.pending_among(item.tx_hash for item in checked)
        await self.repo.store_final_txs(
            [
                {
                    **tx_doc(
                        item,
                        status=CONFIRMED,
                        submit_time=utc(pooled.get(item.tx_hash, {}).get("submit_time")) or now,
                    ),
                    "block_height": block.header.height,
                    "block_hash": block.hash,
                    "transaction_index": index,
                    "confirm_time": now,
                }
                for index, item in enumerate(checked)
            ]
        )
        final = pb.Block()
        final.CopyFrom(block)
        final.validator_count = len(self.validators)
        if not final.size_bytes:
            final.size_bytes = blocks.block_size(block)
        try:
            await self.repo.insert_block(block_to_doc(final, final_time=now))
        except DuplicateKeyError:
            stored = await self.repo.block_doc(height=block.header.height)
            if stored is None or stored["hash"] != block.hash:
                raise ChainError(
                    f"another block is stored at height {block.header.height}"
                ) from None

    async def _apply(
        self, block: pb.Block, checked: list[CheckedTransaction], final_time: datetime | None
    ) -> None:
        now = final_time or self.clock.now()
        height = block.header.height
        await self.repo.index_block(block.hash, height)
        await self.repo.unpool(list(block.tx_hashes))
        await self.repo.index_anchors(
            [(item.session_id, item.tx_hash) for item in checked if item.session_id], height
        )
        for index, item in enumerate(checked):
            if item.task is not None:
                await self.repo.record_task_facts(item.tx_hash, height, item.task.as_doc())
            if item.vote is not None:
                await self.repo.record_vote_facts(item.tx_hash, height, index, item.vote.as_doc())
        await anchors.on_final_block(
            self.repo,
            [c for c in checked if c.session_id],
            block_height=height,
            block_hash=block.hash,
            now=now,
            timeout_s=self.config.anchoring_timeout_s,
        )
        await self.repo.forget_votes_below(height + 1)
        if height > 0 and block.approvals:
            round_ = block.approvals[0].round
            existing = await self.repo.count_rounds(
                RoundFilter(height=height, round=round_, status="approved")
            )
            if not existing:
                await self.repo.insert_round(
                    {
                        "round_id": str(uuid.uuid4()),
                        "height": height,
                        "round": round_,
                        "slot": block.header.slot,
                        "block_hash": block.hash,
                        "proposer_id": block.header.proposer_id,
                        "status": "approved",
                        "votes": [
                            {
                                "validator_id": a.validator_id,
                                "decision": "approve",
                                "signature": a.signature,
                                "vote_time": a.approve_time.ToDatetime(tzinfo=now.tzinfo),
                            }
                            for a in block.approvals
                        ],
                        "approval_count": len(block.approvals),
                        "rejection_count": 0,
                        "validator_count": len(self.validators),
                        "required_approvals": self.validators.required_approvals,
                        "start_time": block.header.block_time.ToDatetime(tzinfo=now.tzinfo),
                        "end_time": now,
                    }
                )

    async def block(
        self,
        *,
        height: int | None = None,
        block_hash: str | None = None,
        with_transactions: bool = False,
    ) -> pb.Block | None:
        """A stored block (with its transactions when asked)."""
        doc = await self.repo.block_doc(height=height, block_hash=block_hash)
        if doc is None:
            return None
        block = doc_to_block(doc)
        block.confirmations = self.tip.height - block.header.height + 1
        if with_transactions:
            docs = await self.repo.tx_docs(block.tx_hashes)
            for tx_hash in block.tx_hashes:
                doc_tx = docs.get(tx_hash)
                if doc_tx is None:
                    raise ChainError(
                        f"transaction {tx_hash} of block {block.header.height} is missing"
                    )
                block.transactions.append(doc_to_transaction(doc_tx, tip_height=self.tip.height))
        return block

    def _remember_clear(
        self, tip: blocks.Tip, tx_hashes: Sequence[str], session_ids: Sequence[str]
    ) -> None:
        """Remembers what lookups made at ``tip`` found not in the chain, if the tip has not
        moved since (a block appended meanwhile may hold them)."""
        if self.tip is not tip:
            return
        if len(self._unconfirmed) + len(tx_hashes) > CLEAR_MEMORY:
            self._unconfirmed.clear()
        if len(self._unanchored) + len(session_ids) > CLEAR_MEMORY:
            self._unanchored.clear()
        self._unconfirmed.update(tx_hashes)
        self._unanchored.update(session_ids)

    # -- leaders ------------------------------------------------------------------------

    async def schedule(self) -> poot.Schedule:
        """The leader schedule of the next height (cached per tip)."""
        if self._schedule is not None and self._schedule[0] == self.tip.hash:
            return self._schedule[1]
        found = await self.schedule_at(self.tip.height + 1)
        assert found is not None
        self._schedule = (self.tip.hash, found)
        return found

    async def schedule_at(self, height: int) -> poot.Schedule | None:
        """The leader schedule of a height up to the next one (``None`` beyond)."""
        if height < 1 or height > self.tip.height + 1:
            return None
        if height == self.tip.height + 1:
            end = self.tip.time_ns // 1000
            seed = self.tip.hash
            facts = [f for _, f in self._facts if poot.in_window(f, end)]
            recent = list(self._recent)
        else:
            parent = await self.repo.block_doc(height=height - 1)
            if parent is None:
                return None
            end = (
                int(parent["block_time_s"]) * blocks.NANOS + int(parent["block_time_nanos"])
            ) // 1000
            seed = parent["hash"]
            facts = [
                poot.TaskFacts.from_doc(doc)
                for doc in await self.repo.task_facts(end - poot.WINDOW_US, end, height - 1)
            ]
            recent = []
            for past in range(max(1, height - poot.RECENT_WINNERS), height):
                doc = await self.repo.block_doc(height=past)
                if doc is not None:
                    recent.append(doc["proposer_id"])
        node_tallies = poot.tallies(facts)
        scores = {
            v.validator_id: node_tallies[poot.validator_node_id(v.public_key)]
            for v in self.validators
            if poot.validator_node_id(v.public_key) in node_tallies
        }
        return poot.schedule(
            slot=height,
            seed=seed,
            candidates=self.validators.ids,
            scores=scores,
            recent_winners=[p for p in recent if p in self.validators.ids],
        )

    # -- the pending pool --------------------------------------------------------------

    async def accept(self, signed: pb.SignedTransaction) -> tuple[Doc, bool]:
        """Takes a transaction into the pool; the stored one and whether it is new."""
        now = self.clock.now()
        checked = transactions.check(signed, self.validators, now=now)
        tip = self.tip
        existing = await self.repo.tx_doc(checked.tx_hash)
        if existing is not None:
            return existing, False
        self._remember_clear(tip, [checked.tx_hash], [])
        if checked.session_id:
            anchored = await self.repo.anchored_sessions_among([checked.session_id])
            if not anchored:
                self._remember_clear(tip, [], [checked.session_id])
            pending = await self.repo.pending_anchor_of(checked.session_id)
            if anchored or (pending is not None and pending["tx_hash"] != checked.tx_hash):
                raise LucidError(
                    ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                    f"session {checked.session_id} is already anchored",
                    metadata={"session_id": checked.session_id},
                )
        doc = tx_doc(checked, status=PENDING, submit_time=now)
        try:
            await self.repo.insert_pending(doc)
        except DuplicateKeyError:
            stored = await self.repo.tx_doc(checked.tx_hash)
            return (stored or doc), False
        if checked.session_id:
            await anchors.on_pending_tx(
                self.repo, checked, now=now, timeout_s=self.config.anchoring_timeout_s
            )
        for listener in self.on_new_transaction:
            listener(checked)
        return doc, True

    async def has_work(self) -> bool:
        """Whether a transaction waits that is worth a block (an uptime beacon is not)."""
        return await self.repo.count_pending(work_only=True) > 0

    async def select_for_block(self) -> list[CheckedTransaction]:
        """The pending transactions a new block takes: oldest first, ≤ 1000, ≤ 1 MiB."""
        now = self.clock.now()
        docs = await self.repo.pending_docs(limit=2 * MAX_BLOCK_TRANSACTIONS)
        anchored = await self.repo.anchored_sessions_among(
            d["session_id"]
            for d in docs
            if d.get("session_id") and d["session_id"] not in self._unanchored
        )
        chosen: list[CheckedTransaction] = []
        sessions: set[str] = set()
        budget = MAX_BLOCK_BYTES - BLOCK_OVERHEAD_BYTES
        for doc in docs:
            session_id = doc.get("session_id")
            if session_id and session_id in anchored:
                await self.repo.drop_tx(doc["tx_hash"], f"session {session_id} is already anchored")
                continue
            if session_id and session_id in sessions:
                continue
            try:
                checked = transactions.check(doc_to_signed(doc), self.validators, now=now)
            except LucidError as exc:
                await self.repo.drop_tx(doc["tx_hash"], exc.message, status=FAILED)
                continue
            if checked.size_bytes + 64 > budget:
                continue
            budget -= checked.size_bytes + 64
            chosen.append(checked)
            if session_id:
                sessions.add(session_id)
            if len(chosen) == MAX_BLOCK_TRANSACTIONS:
                break
        if all(c.rides_along for c in chosen):
            return []
        return chosen

    async def expire_anchorings(self) -> int:
        """Expires the anchorings past their time (their transactions leave the pool)."""
        return len(await anchors.expire_due(self.repo, self.clock.now()))

    async def tx_index(self, tx_hash: str) -> tuple[Doc, pb.Block] | None:
        """A confirmed transaction and its block."""
        doc = await self.repo.tx_doc(tx_hash)
        if doc is None or doc.get("status") != CONFIRMED or doc.get("block_height") is None:
            return None
        block = await self.block(height=int(doc["block_height"]))
        if block is None:
            return None
        return doc, block

    def now_ns(self) -> int:
        """The clock in nanoseconds."""
        return int(self.clock.timestamp() * 1e9)

    def round_start_ns(self, round_: int) -> int:
        """When a round of the next height starts."""
        interval = int(self.config.block_interval_s * 1e9)
        timeout = int(self.config.leader_timeout_s * 1e9)
        return self.tip.time_ns + interval + round_ * timeout

    def round_at(self, now_ns: int | None = None) -> int:
        """The round of the next height at a time (-1 before the block interval has passed)."""
        now_ns = self.now_ns() if now_ns is None else now_ns
        start = self.round_start_ns(0)
        if now_ns < start:
            return -1
        return int((now_ns - start) // int(self.config.leader_timeout_s * 1e9))

    def next_round_in(self, now_ns: int | None = None) -> float:
        """Seconds until the next round of the next height starts."""
        now_ns = self.now_ns() if now_ns is None else now_ns
        return max(0.0, (self.round_start_ns(self.round_at(now_ns) + 1) - now_ns) / 1e9)
