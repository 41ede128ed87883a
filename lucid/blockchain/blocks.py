"""Blocks: building, hashing and the checks every block must pass (pure, no I/O).

A block's hash is the SHA-256 of its header's canonical encoding (version 1,
``lucid.lib.canonical``); its ``merkle_root`` is the RFC 9162 root over its
transaction hashes in block order (each hash's 32 raw bytes is a leaf entry); its
proposer signs the proposal message of the hash; it is final when approvals of one
round from at least two thirds of the validators verify. At most 1000
transactions and 1 MiB.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import nacl.signing
from google.protobuf import timestamp_pb2

from lucid.blockchain import transactions
from lucid.blockchain.config import MAX_BLOCK_BYTES, MAX_BLOCK_TRANSACTIONS, TIME_TOLERANCE_S
from lucid.blockchain.keys import ValidatorSet, sign_hex, verify_signature
from lucid.blockchain.transactions import CheckedTransaction
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.common.v1 import proofs_pb2
from lucid.lib import canonical, merkle
from lucid.runtime.errors import LucidError

NANOS = 1_000_000_000


@dataclass(frozen=True)
class Tip:
    """The last final block, as the next block links to it."""

    height: int
    hash: str
    time_ns: int
    """Its block time, nanoseconds since the epoch."""


def time_ns(stamp: timestamp_pb2.Timestamp) -> int:
    """A timestamp in nanoseconds since the epoch."""
    return stamp.seconds * NANOS + stamp.nanos


def header_fields(header: proofs_pb2.BlockHeader) -> canonical.HeaderFields:
    """The canonical fields of a header."""
    return canonical.HeaderFields(
        version=header.version,
        height=header.height,
        previous_hash=header.previous_hash,
        merkle_root=header.merkle_root,
        block_time_seconds=header.block_time.seconds,
        block_time_nanos=header.block_time.nanos,
        slot=header.slot,
        transaction_count=header.transaction_count,
        proposer_id=header.proposer_id,
    )


def encoded_header(header: proofs_pb2.BlockHeader) -> bytes:
    """The canonical encoding of a header."""
    return canonical.encode_header(header_fields(header))


def compute_hash(header: proofs_pb2.BlockHeader) -> str:
    """The block hash of a header."""
    return canonical.header_hash(header_fields(header))


def merkle_root_of(tx_hashes: Sequence[str]) -> str:
    """The RFC 9162 root over transaction hashes (their raw bytes are the entries)."""
    return merkle.root(merkle.leaf_hash(bytes.fromhex(h)) for h in tx_hashes).hex()


def inclusion_proof(tx_hashes: Sequence[str], index: int) -> proofs_pb2.InclusionProof:
    """The inclusion proof of transaction ``index`` in a block's transaction tree."""
    tree = merkle.MerkleTree([merkle.leaf_hash(bytes.fromhex(h)) for h in tx_hashes])
    return proofs_pb2.InclusionProof(
        leaf_index=index,
        tree_size=tree.size,
        leaf_hash=tree.leaves[index].hex(),
        audit_path=[node.hex() for node in tree.proof(index)],
        root_hash=tree.root.hex(),
    )


def as_proposed(block: pb.Block, transactions: Iterable[pb.Transaction] | None = None) -> pb.Block:
    """A block as its proposer made it: header, signature, transactions; no votes or
    confirmation state (``transactions`` replaces the block's own when given)."""
    return pb.Block(
        header=block.header,
        hash=block.hash,
        proposer_public_key=block.proposer_public_key,
        proposer_signature=block.proposer_signature,
        tx_hashes=block.tx_hashes,
        transactions=block.transactions if transactions is None else transactions,
    )


def block_size(block: pb.Block) -> int:
    """The encoded size of a block as proposed: header, signature, transactions."""
    return as_proposed(block).ByteSize()


def build(
    *,
    parent: Tip,
    transactions: Sequence[CheckedTransaction],
    proposer_id: str,
    key: nacl.signing.SigningKey,
    slot: int,
    block_time_ns: int,
) -> pb.Block:
    """A signed block proposal on top of ``parent``."""
    tx_hashes = [t.tx_hash for t in transactions]
    stamp = timestamp_pb2.Timestamp(seconds=block_time_ns // NANOS, nanos=block_time_ns % NANOS)
    header = proofs_pb2.BlockHeader(
        version=canonical.HEADER_VERSION,
        height=parent.height + 1,
        previous_hash=parent.hash,
        merkle_root=merkle_root_of(tx_hashes),
        block_time=stamp,
        proposer_id=proposer_id,
        slot=slot,
        transaction_count=len(tx_hashes),
    )
    digest = compute_hash(header)
    block = pb.Block(
        header=header,
        hash=digest,
        proposer_public_key=bytes(key.verify_key).hex(),
        proposer_signature=sign_hex(key, canonical.proposal_message(digest)),
        tx_hashes=tx_hashes,
        transactions=[
            pb.Transaction(tx_hash=t.tx_hash, signed=t.signed, size_bytes=t.size_bytes)
            for t in transactions
        ],
    )
    block.size_bytes = block_size(block)
    return block


def hash_errors(block: pb.Block) -> list[str]:
    """Whether the header (version 1) hashes to the block's hash."""
    if block.header.version != canonical.HEADER_VERSION:
        return [f"unknown header version {block.header.version}"]
    try:
        digest = compute_hash(block.header)
    except canonical.EncodingError as exc:
        return [f"the header cannot be encoded: {exc}"]
    if digest != block.hash:
        return [f"hash mismatch: the header hashes to {digest}, not {block.hash}"]
    return []


def proposer_errors(block: pb.Block, validators: ValidatorSet) -> list[str]:
    """Whether a validator of the set proposed the block and signed its hash."""
    proposer = block.header.proposer_id
    key = validators.key_of(proposer)
    if key is None:
        return [f"proposer {proposer!r} is not a validator"]
    if key != block.proposer_public_key:
        return [f"the proposer key is not {proposer}'s registered key"]
    if not verify_signature(key, canonical.proposal_message(block.hash), block.proposer_signature):
        return ["the proposer signature does not verify"]
    return []


def merkle_errors(block: pb.Block) -> list[str]:
    """Whether the transaction hashes make the header's Merkle root (and keep the limits)."""
    header = block.header
    count = len(block.tx_hashes)
    errors: list[str] = []
    if count > MAX_BLOCK_TRANSACTIONS:
        errors.append(f"{count} transactions; at most {MAX_BLOCK_TRANSACTIONS}")
    if header.transaction_count != count:
        errors.append(f"transaction_count {header.transaction_count} but {count} hashes")
    if len(set(block.tx_hashes)) != count:
        errors.append("a transaction appears twice")
    try:
        root = merkle_root_of(block.tx_hashes)
    except ValueError:
        return [*errors, "a transaction hash is not hex"]
    if root != header.merkle_root:
        errors.append(f"merkle root mismatch: the transactions give {root}")
    return errors


def link_errors(block: pb.Block, parent: Tip, now: datetime | None = None) -> list[str]:
    """Whether the block extends ``parent``: next height, its hash, a later time."""
    header = block.header
    errors: list[str] = []
    if header.height != parent.height + 1:
        errors.append(f"height {header.height} does not follow {parent.height}")
    if header.previous_hash != parent.hash:
        errors.append(f"previous_hash {header.previous_hash} is not the parent {parent.hash}")
    if time_ns(header.block_time) <= parent.time_ns:
        errors.append("block_time is not after the parent's")
    if now is not None:
        ahead = time_ns(header.block_time) / NANOS - now.timestamp()
        if ahead > TIME_TOLERANCE_S:
            errors.append(f"block_time lies {ahead:.0f} s in the future")
    return errors


def check_header(
    block: pb.Block,
    *,
    parent: Tip | None,
    validators: ValidatorSet,
    now: datetime | None = None,
) -> list[str]:
    """What is wrong with a block's hash, link, proposer signature and Merkle root.

    ``parent`` is the block it must extend (``None`` skips the link check).
    """
    errors = hash_errors(block)
    if parent is not None:
        errors += link_errors(block, parent, now)
    return errors + proposer_errors(block, validators) + merkle_errors(block)


def check_transactions(
    block: pb.Block, validators: ValidatorSet, *, now: datetime | None = None
) -> tuple[list[CheckedTransaction], list[str]]:
    """Checks the full transactions a block carries against its hashes and the rules."""
    errors: list[str] = []
    checked: list[CheckedTransaction] = []
    if len(block.transactions) != len(block.tx_hashes):
        return [], [f"{len(block.transactions)} transactions for {len(block.tx_hashes)} hashes"]
    genesis = block.header.height == 0
    for index, (tx, expected) in enumerate(zip(block.transactions, block.tx_hashes, strict=True)):
        try:
            item = transactions.check(tx.signed, validators, now=now, genesis=genesis)
        except LucidError as exc:
            errors.append(f"transaction {index}: {exc.message}")
            continue
        if item.tx_hash != expected:
            errors.append(f"transaction {index} hashes to {item.tx_hash}, not {expected}")
            continue
        checked.append(item)
    sessions = [t.session_id for t in checked if t.session_id]
    if len(set(sessions)) != len(sessions):
        errors.append("two anchors of one session")
    if block_size(block) > MAX_BLOCK_BYTES:
        errors.append(f"the block is {block_size(block)} bytes; at most 1 MiB")
    return checked, errors


def check_approvals(block: pb.Block, validators: ValidatorSet) -> list[str]:
    """What is wrong with a final block's approvals (two thirds of one round)."""
    if not block.approvals:
        return ["no approvals"]
    rounds = {a.round for a in block.approvals}
    if len(rounds) != 1:
        return [f"approvals of several rounds {sorted(rounds)}"]
    round_ = rounds.pop()
    message = canonical.approval_message(block.header.height, round_, block.hash)
    seen: set[str] = set()
    errors: list[str] = []
    for approval in block.approvals:
        key = validators.key_of(approval.validator_id)
        if key is None:
            errors.append(f"approval from {approval.validator_id!r}, not a validator")
        elif approval.validator_id in seen:
            errors.append(f"two approvals from {approval.validator_id}")
        elif key != approval.public_key:
            errors.append(f"approval key is not {approval.validator_id}'s registered key")
        elif not verify_signature(key, message, approval.signature):
            errors.append(f"approval of {approval.validator_id} does not verify")
        else:
            seen.add(approval.validator_id)
    if len(seen) < validators.required_approvals:
        errors.append(
            f"{len(seen)} valid approvals of {len(validators)} validators; "
            f"{validators.required_approvals} needed (3a ≥ 2N)"
        )
    return errors


def tip_of(block: pb.Block) -> Tip:
    """The tip a block makes."""
    return Tip(block.header.height, block.hash, time_ns(block.header.block_time))
