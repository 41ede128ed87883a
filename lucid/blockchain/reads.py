"""What the chain rpcs read and check on one validator: stored blocks, transactions and
rounds by page, a transaction with its inclusion proof, the leader slots of past and
next heights, work credits, and the checks ``ValidateBlock`` runs on a block sent in.

The servicers translate to and from these; the queries are the store's
(``lucid.blockchain.store.chain``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lucid.blockchain import blocks, genesis, poot
from lucid.blockchain.blocks import Tip
from lucid.blockchain.node import ChainNode, Ready
from lucid.blockchain.store.chain import Doc, RoundFilter, doc_to_block, doc_to_transaction, utc
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.common.v1 import proofs_pb2
from lucid.runtime.errors import not_found

CHECKS = ("hash", "signature", "merkle_root", "transactions", "link", "approvals")
"""The checks ``ValidateBlock`` can run, in the order it reports them."""


@dataclass(frozen=True)
class LeaderSlot:
    """Who was to lead a height, and who did."""

    height: int
    epoch: int
    primary_id: str
    fallback_ids: tuple[str, ...]
    start_ns: int
    winner_id: str = ""
    """The proposer of the stored block (empty: none stored yet)."""


class ChainReads:
    """The reads and checks of the chain rpcs, on one validator's node."""

    def __init__(self, node: ChainNode) -> None:
        self.node = node

    async def genesis_doc(self) -> Doc:
        """The stored genesis block."""
        doc = await self.node.require().ledger.repo.block_doc(height=0)
        if doc is None:
            raise not_found("genesis block")
        return doc

    async def pending_count(self, tx_type: int = 0) -> int:
        """Transactions waiting in the pool (of one type; 0: any)."""
        return await self.node.repo.count_pending(tx_type=tx_type)

    async def pending_page(self, tx_type: int, *, offset: int, limit: int) -> tuple[list[Doc], int]:
        """A page of the pool, and its size."""
        repo = self.node.require().ledger.repo
        total = await repo.count_pending(tx_type=tx_type)
        docs = await repo.pending_docs(tx_type=tx_type, skip=offset, limit=limit)
        return docs, total

    async def blocks_page(
        self, low: int, high: int, *, descending: bool, offset: int, limit: int
    ) -> tuple[list[Doc], int]:
        """A page of the final blocks from height ``low`` to ``high``, and how many there are."""
        repo = self.node.require().ledger.repo
        total = await repo.count_blocks(low, high)
        docs = await repo.block_docs(low, high, descending=descending, skip=offset, limit=limit)
        return docs, total

    async def transaction(
        self, tx_hash: str, *, with_proof: bool
    ) -> tuple[pb.Transaction, proofs_pb2.InclusionProof | None]:
        """A stored transaction, and its inclusion proof in its block when asked and final."""
        ledger = self.node.require().ledger
        doc = await ledger.repo.tx_doc(tx_hash)
        if doc is None:
            raise not_found("transaction")
        tx = doc_to_transaction(doc, tip_height=ledger.tip.height)
        if not (with_proof and tx.block_hash):
            return tx, None
        block = await ledger.repo.block_doc(height=tx.block_height)
        if block is None:
            return tx, None
        return tx, blocks.inclusion_proof(block["tx_hashes"], tx.transaction_index)

    async def rounds_page(
        self, where: RoundFilter, *, offset: int, limit: int
    ) -> tuple[list[Doc], int]:
        """A page of the stored consensus rounds, newest first, and how many match."""
        self.node.require()
        total = await self.node.repo.count_rounds(where)
        return await self.node.repo.round_docs(where, skip=offset, limit=limit), total

    async def task_facts(self, until_us: int) -> list[poot.TaskFacts]:
        """The task proofs of final blocks in the work-credit window that ends at ``until_us``."""
        ledger = self.node.require().ledger
        docs = await ledger.repo.task_facts(until_us - poot.WINDOW_US, until_us, ledger.tip.height)
        return [poot.TaskFacts.from_doc(d) for d in docs]

    async def leader_slots(self, first: int, count: int) -> list[LeaderSlot]:
        """The leaders of heights ``first`` … ``first + count - 1`` up to the next height
        (from height 1; stops at the first height whose schedule or parent is unknown)."""
        ledger = self.node.require().ledger
        interval_ns = int(self.node.config.block_interval_s * 1e9)
        slots: list[LeaderSlot] = []
        for height in range(max(1, first), min(first + count, ledger.tip.height + 2)):
            schedule = await ledger.schedule_at(height)
            parent = await ledger.repo.block_doc(height=height - 1)
            if schedule is None or parent is None:
                break
            block = await ledger.repo.block_doc(height=height)
            slots.append(
                LeaderSlot(
                    height=height,
                    epoch=poot.epoch_of_slot(
                        poot.task_slot(utc(parent["block_time"]) or self.node.clock.now())
                    ),
                    primary_id=schedule.primary,
                    fallback_ids=tuple(schedule.fallbacks),
                    start_ns=int(parent["block_time_s"]) * 1_000_000_000
                    + int(parent["block_time_nanos"])
                    + interval_ns,
                    winner_id=block["proposer_id"] if block is not None else "",
                )
            )
        return slots

    async def validate_block(self, block: pb.Block, asked: set[str]) -> dict[str, list[str]]:
        """What is wrong with a block sent in, by check (the ``asked`` ones of ``CHECKS``;
        none asked: all of them)."""
        ready = self.node.require()
        wanted = [name for name in CHECKS if name in asked] if asked else list(CHECKS)
        checks = _checks(block, ready, self.node)
        found: dict[str, list[str]] = {}
        for name in wanted:
            found[name] = (
                await self._link_errors(ready, block) if name == "link" else checks[name]()
            )
        return found

    async def _link_errors(self, ready: Ready, block: pb.Block) -> list[str]:
        if block.header.height == 0:
            return genesis.check_genesis(block)
        parent = await ready.ledger.repo.block_doc(height=block.header.height - 1)
        if parent is None:
            return [f"no stored block at height {block.header.height - 1} to link to"]
        stored = doc_to_block(parent)
        return blocks.link_errors(
            block,
            Tip(stored.header.height, stored.hash, blocks.time_ns(stored.header.block_time)),
        )


def _checks(block: pb.Block, ready: Ready, node: ChainNode) -> dict[str, Callable[[], list[str]]]:
    validators = ready.validators
    is_genesis = block.header.height == 0

    def merkle_root() -> list[str]:
        pairs = zip(block.transactions, block.tx_hashes, strict=False)
        return blocks.merkle_errors(block) + [
            f"transaction {i} is {t.tx_hash}, not {h}"
            for i, (t, h) in enumerate(pairs)
            if t.tx_hash and t.tx_hash != h
        ]

    return {
        "hash": lambda: blocks.hash_errors(block),
        "signature": lambda: blocks.proposer_errors(
            block, genesis.signer_set(block) if is_genesis else validators
        ),
        "merkle_root": merkle_root,
        "transactions": lambda: blocks.check_transactions(block, validators, now=node.clock.now())[
            1
        ],
        "approvals": lambda: (
            genesis.check_genesis(block)
            if is_genesis
            else blocks.check_approvals(block, validators)
        ),
    }
