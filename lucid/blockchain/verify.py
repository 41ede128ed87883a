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
from typing import Any

from pymongo import AsyncMongoClient

from lucid.blockchain import blocks, genesis, transactions
from lucid.blockchain.blocks import Tip
from lucid.blockchain.config import collection_prefix
from lucid.blockchain.keys import ValidatorSet
from lucid.blockchain.store.chain import Doc, Repository, doc_to_block, doc_to_signed
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
        problems = self.check_transactions(block, tx_docs, validators, genesis=parent is None)
        if parent is None:
            return problems + genesis.check_genesis(with_transactions(block, tx_docs))
        return problems + header_problems(block, validators, parent)

    def check_transactions(
        self, block: pb.Block, tx_docs: dict[str, Doc], validators: ValidatorSet, *, genesis: bool
    ) -> list[str]:
        """What is wrong with the stored transactions a block lists (in block order)."""
        problems: list[str] = []
        for tx_hash in block.tx_hashes:
            doc = tx_docs.get(tx_hash)
            if doc is None:
                problems.append(f"transaction {tx_hash} is missing")
                continue
            problems += self._check_tx(tx_hash, doc, validators, is_genesis=genesis)
        return problems

    def _check_tx(
        self, tx_hash: str, doc: Doc, validators: ValidatorSet, *, is_genesis: bool
    ) -> list[str]:
        encoded = str(doc.get("canonical", "")).encode()
        if canonical.sha256_hex(encoded) != tx_hash:
            return [f"transaction {tx_hash}: its stored body hashes to something else"]
        try:
            signed, data = _signed_and_data(doc, encoded)
            checked = transactions.check(
                signed, validators, genesis=is_genesis, stored=(encoded, data)
            )
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


def header_problems(block: pb.Block, validators: ValidatorSet, parent: Tip) -> list[str]:
    """What is wrong with a block above genesis apart from its transactions: hash, link,
    proposer, Merkle root, approvals."""
    return [
        *blocks.hash_errors(block),
        *blocks.link_errors(block, parent),
        *blocks.proposer_errors(block, validators),
        *blocks.merkle_errors(block),
        *blocks.check_approvals(block, validators),
    ]


def _signed(doc: Doc) -> pb.SignedTransaction:
    try:
        return doc_to_signed(doc)
    except Exception as exc:
        raise ValueError(f"cannot read the stored transaction: {exc}") from None


def _signed_and_data(doc: Doc, encoded: bytes) -> tuple[pb.SignedTransaction, Any]:
    """What ``doc_to_signed`` reads, with the JSON data of the stored encoding (decoded
    once: the rules check it again only if the body does not re-encode to these bytes)."""
    try:
        data = canonical.decode_tagged(encoded, canonical.TX_TAG)
        body = pb.TransactionBody()
        canonical.from_canonical_data(data, body)
        signed = pb.SignedTransaction(
            body=body,
            signer_id=doc["signer_id"],
            public_key=doc["public_key"],
            signature=doc["signature"],
        )
    except Exception as exc:
        raise ValueError(f"cannot read the stored transaction: {exc}") from None
    return signed, data


async def verify_chain(repo: Repository) -> Report:
    """Walks the whole stored chain of one validator."""
    started = time.perf_counter()
    report = Report()
    stored = await _read(repo)
    validators: ValidatorSet | None = None
    parent: Tip | None = None
    walk = ChainWalk()
    for height in range(stored.last + 1):
        if height >= len(stored.chain):
            message = f"no block is stored at height {height}; the chain goes on to {stored.last}"
            report.bad = BadBlock(height, "", (message,))
            break
        block = stored.chain[height]
        tx_docs = {h: stored.txs[h] for h in block.tx_hashes if h in stored.txs}
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
            problems = walk.check_transactions(block, tx_docs, validators, genesis=False)
            problems += stored.header_problems(block, validators, parent)
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


@dataclass
class _Stored:
    """A stored chain as read: its blocks from genesis up to the first gap, the highest
    height stored, every transaction by hash, and the header checks made while reading."""

    chain: list[pb.Block]
    last: int
    txs: dict[str, Doc] = field(default_factory=dict)
    checked_with: ValidatorSet | None = None
    checked: dict[int, list[str]] = field(default_factory=dict)

    def header_problems(self, block: pb.Block, validators: ValidatorSet, parent: Tip) -> list[str]:
        """``header_problems`` of a block, made already if made with these validators."""
        found = self.checked.get(block.header.height)
        if found is None or validators != self.checked_with:
            found = header_problems(block, validators, parent)
        return found


async def _read(repo: Repository) -> _Stored:
    """Reads the chain in one pass over each collection.

    The transactions (ten documents a block) take the longest to read, so while they
    come in the genesis block's own transactions are read by id (they name the validator
    set) and every block's header, proposer, Merkle root and approvals are checked; the
    walk then checks the transactions.
    """
    reading = asyncio.create_task(_all(repo.scan_transactions()))
    try:
        by_height = {int(doc["_id"]): doc for doc in await _all(repo.scan_blocks())}
        stored = _Stored(_contiguous(by_height), max(by_height, default=-1))
        if stored.chain and stored.chain[0].header.height == 0:
            genesis_txs = await repo.tx_docs(stored.chain[0].tx_hashes)
            with contextlib.suppress(ValueError):
                members = genesis.validator_set_of(with_transactions(stored.chain[0], genesis_txs))
                stored.checked = await _check_headers(stored.chain, members)
                stored.checked_with = members
        stored.txs = {str(doc["_id"]): doc for doc in await reading}
    finally:
        if not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
    return stored


def _contiguous(stored: dict[int, Doc]) -> list[pb.Block]:
    """The stored blocks from height 0 up to the first height with none."""
    chain: list[pb.Block] = []
    while (doc := stored.get(len(chain))) is not None:
        chain.append(doc_to_block(doc))
    return chain


async def _check_headers(chain: list[pb.Block], validators: ValidatorSet) -> dict[int, list[str]]:
    """``header_problems`` of every block above genesis, each against the block stored
    below it, yielding to the event loop between blocks (so the transactions being read
    meanwhile keep coming in). Stops at the first block whose stored height is not its own:
    the walk stops there too."""
    found: dict[int, list[str]] = {}
    for height in range(1, len(chain)):
        block, below = chain[height], chain[height - 1]
        if block.header.height != height or below.header.height != height - 1:
            break
        found[height] = header_problems(block, validators, blocks.tip_of(below))
        await asyncio.sleep(0)
    return found


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
