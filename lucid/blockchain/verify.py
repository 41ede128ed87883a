"""``lucid chain verify``: walks one validator's stored chain offline and names the first
bad block.

Reads the blocks and transactions straight from MongoDB (no validator needs to run;
one pass over each collection) and checks, block by block from genesis: the genesis
block is exactly the genesis of the validator set it names; heights are contiguous;
each block links to its parent's hash and comes after it; its header hashes to its
hash (canonical encoding v1); its proposer is a validator whose key signed it; every
transaction is stored, hashes (from its stored canonical encoding) to the hash the
block lists and keeps every rule, appears once in the chain, and anchors a session at
most once; the transaction hashes make the header's Merkle root; and approvals of one
round from at least two thirds of the validators verify. Any edit of a stored block
or transaction breaks one of these.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pymongo import AsyncMongoClient

from lucid.blockchain import blocks, genesis, transactions
from lucid.blockchain.blocks import Tip
from lucid.blockchain.config import collection_prefix
from lucid.blockchain.keys import ValidatorSet
from lucid.blockchain.repository import Doc, Repository, doc_to_block, doc_to_signed
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.lib import canonical
from lucid.runtime.config import Settings
from lucid.runtime.errors import LucidError


@dataclass(frozen=True)
class BadBlock:
    """The first block that fails a check."""

    height: int
    block_hash: str
    problems: tuple[str, ...]


@dataclass
class Report:
    """The outcome of a walk."""

    blocks_checked: int = 0
    transactions_checked: int = 0
    tip_height: int = -1
    tip_hash: str = ""
    validators: list[str] = field(default_factory=list)
    bad: BadBlock | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every block passed."""
        return self.bad is None and self.blocks_checked > 0

    def describe(self) -> str:
        """One paragraph for people."""
        if self.bad is not None:
            lines = [
                f"FIRST BAD BLOCK: height {self.bad.height} ({self.bad.block_hash or 'no hash'})",
                *(f"  - {p}" for p in self.bad.problems),
                f"{self.blocks_checked} blocks before it verified.",
            ]
            return "\n".join(lines)
        if not self.blocks_checked:
            return "no chain stored (no genesis block)"
        rate = self.blocks_checked / self.seconds if self.seconds else 0.0
        return (
            f"lucid_blocks verified: {self.blocks_checked} blocks (up to {self.tip_height}), "
            f"{self.transactions_checked} transactions, tip {self.tip_hash}, "
            f"validators {', '.join(self.validators)}; {rate:.0f} blocks/s"
        )


class ChainWalk:
    """The state carried from block to block."""

    def __init__(self) -> None:
        self.seen_txs: set[str] = set()
        self.anchored: set[str] = set()

    def check_block(
        self,
        block: pb.Block,
        tx_docs: dict[str, Doc],
        validators: ValidatorSet,
        parent: Tip | None,
    ) -> list[str]:
        """What is wrong with one stored block (``parent`` is ``None`` for genesis)."""
        problems: list[str] = []
        for tx_hash in block.tx_hashes:
            doc = tx_docs.get(tx_hash)
            if doc is None:
                problems.append(f"transaction {tx_hash} is missing")
                continue
            problems += self._check_tx(tx_hash, doc, validators, is_genesis=parent is None)
        if parent is None:
            return problems + genesis.check_genesis(with_transactions(block, tx_docs))
        problems += blocks.hash_errors(block)
        problems += blocks.link_errors(block, parent)
        problems += blocks.proposer_errors(block, validators)
        problems += blocks.merkle_errors(block)
        problems += blocks.check_approvals(block, validators)
        return problems

    def _check_tx(
        self, tx_hash: str, doc: Doc, validators: ValidatorSet, *, is_genesis: bool
    ) -> list[str]:
        encoded = str(doc.get("canonical", "")).encode()
        if canonical.sha256_hex(encoded) != tx_hash:
            return [f"transaction {tx_hash}: its stored body hashes to something else"]
        try:
            checked = transactions.check(_signed(doc), validators, genesis=is_genesis)
        except (LucidError, ValueError) as exc:
            message = exc.message if isinstance(exc, LucidError) else str(exc)
            return [f"transaction {tx_hash}: {message}"]
        problems = []
        if checked.tx_hash != tx_hash:
            problems.append(f"transaction {tx_hash}: its stored encoding is not canonical")
        if tx_hash in self.seen_txs:
            problems.append(f"transaction {tx_hash} appears twice in the chain")
        self.seen_txs.add(tx_hash)
        if checked.session_id:
            if checked.session_id in self.anchored:
                problems.append(f"session {checked.session_id} is anchored twice")
            self.anchored.add(checked.session_id)
        return problems


def _signed(doc: Doc) -> pb.SignedTransaction:
    try:
        return doc_to_signed(doc)
    except Exception as exc:
        raise ValueError(f"cannot read the stored transaction: {exc}") from None


async def verify_chain(repo: Repository) -> Report:
    """Walks the whole stored chain of one validator."""
    started = time.perf_counter()
    report = Report()
    walk = ChainWalk()
    validators: ValidatorSet | None = None
    parent: Tip | None = None
    block_docs, tx_docs_all = await asyncio.gather(  # both passes at once
        _all(repo.scan_blocks()), _all(repo.scan_transactions())
    )
    stored = {int(doc["_id"]): doc for doc in block_docs}
    txs = {str(doc["_id"]): doc for doc in tx_docs_all}
    last = max(stored, default=-1)
    for height in range(last + 1):
        doc = stored.get(height)
        if doc is None:
            report.bad = BadBlock(
                height, "", (f"no block is stored at height {height}; the chain goes on to {last}",)
            )
            break
        block = doc_to_block(doc)
        tx_docs = {h: txs[h] for h in block.tx_hashes if h in txs}
        if block.header.height != height:
            problems = [f"the block stored at height {height} says height {block.header.height}"]
        elif parent is None:
            try:
                validators = genesis.validator_set_of(with_transactions(block, tx_docs))
            except ValueError as exc:
                problems = [f"genesis: {exc}"]
            else:
                problems = walk.check_block(block, tx_docs, validators, None)
        else:
            assert validators is not None
            problems = walk.check_block(block, tx_docs, validators, parent)
        if problems:
            report.bad = BadBlock(height, block.hash, tuple(problems))
            break
        report.blocks_checked += 1
        report.transactions_checked += len(block.tx_hashes)
        parent = blocks.tip_of(block)
        report.tip_height, report.tip_hash = parent.height, parent.hash
    if validators is not None:
        report.validators = validators.ids
    report.seconds = time.perf_counter() - started
    return report


async def _all(docs: AsyncIterator[Doc]) -> list[Doc]:
    return [doc async for doc in docs]


def with_transactions(block: pb.Block, tx_docs: dict[str, Doc]) -> pb.Block:
    """A copy of a stored block with the stored transactions it lists (those readable)."""
    copy = pb.Block()
    copy.CopyFrom(block)
    for tx_hash in block.tx_hashes:
        doc = tx_docs.get(tx_hash)
        if doc is None:
            continue
        try:
            copy.transactions.append(pb.Transaction(tx_hash=tx_hash, signed=_signed(doc)))
        except ValueError:
            continue
    return copy


@contextlib.asynccontextmanager
async def stored_replica(settings: Settings, validator_index: int) -> AsyncIterator[Repository]:
    """Validator ``validator_index``'s stored chain in the database of ``settings``."""
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        settings.mongodb_uri, serverSelectionTimeoutMS=5000, tz_aware=True
    )
    try:
        yield Repository(client[settings.mongodb_db], collection_prefix(validator_index))
    finally:
        await client.close()


async def verify_stored_chain(settings: Settings, validator_index: int) -> Report:
    """Opens the database of ``settings`` and walks validator ``validator_index``'s chain."""
    async with stored_replica(settings, validator_index) as repo:
        return await verify_chain(repo)


def main(settings: Settings, validator_index: int) -> int:
    """``lucid chain verify``: prints the report; exit status 0 when the chain is sound."""
    report = asyncio.run(verify_stored_chain(settings, validator_index))
    print(
        f"validator-{validator_index} ({collection_prefix(validator_index)}*): {report.describe()}"
    )
    return 0 if report.ok else 1
