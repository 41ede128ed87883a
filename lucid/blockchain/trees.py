"""Stored Merkle trees of sessions (MerkleService): build, read, validate.

A tree's leaf entries are the session's chunk hashes in order; its root is the RFC
9162 root over ``SHA-256(0x00 ‖ entry)`` (``lucid.lib.merkle``, the one
implementation the sessions cluster uses too). Entries are stored by
``lucid.blockchain.store.trees``, as raw 32-byte values in pages of 100 000. A session
has one tree: the same leaves again return it, different leaves are refused. A tree
is *validated* once its root is the anchored root of the session in a final block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lucid.blockchain import anchors
from lucid.blockchain.store import trees as stored
from lucid.blockchain.store.chain import Doc, Repository
from lucid.blockchain.v1 import merkle_pb2 as mpb
from lucid.lib import merkle
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.runtime.wire import optional_timestamp

BUILT = "built"
VALIDATED = "validated"
FAILED = "failed"
STATUS = {
    BUILT: mpb.MERKLE_TREE_STATUS_BUILT,
    VALIDATED: mpb.MERKLE_TREE_STATUS_VALIDATED,
    FAILED: mpb.MERKLE_TREE_STATUS_FAILED,
}


def leaf_hashes(entries: Sequence[bytes]) -> list[bytes]:
    """The RFC 9162 leaf hashes of leaf entries."""
    return [merkle.leaf_hash(entry) for entry in entries]


async def build(
    repo: Repository, session_id: str, entries_hex: Sequence[str], now: datetime
) -> Doc:
    """Builds and stores a session's tree, or returns the stored one for the same leaves."""
    entries = [bytes.fromhex(h) for h in entries_hex]
    root = merkle.root(leaf_hashes(entries)).hex()
    existing = await stored.by_session(repo, session_id)
    if existing is not None:
        if existing["root_hash"] == root and int(existing["leaf_count"]) == len(entries):
            return existing
        raise LucidError(
            ErrorCode.ERROR_CODE_ALREADY_EXISTS,
            f"session {session_id} already has a tree with other leaves",
            metadata={"tree_id": existing["tree_id"], "root_hash": existing["root_hash"]},
        )
    tree_id = new_id()
    await stored.insert_leaves(repo, tree_id, entries)
    doc: Doc = {
        "_id": session_id,
        "tree_id": tree_id,
        "session_id": session_id,
        "root_hash": root,
        "tree_height": max(0, (len(entries) - 1).bit_length()),
        "leaf_count": len(entries),
        "status": BUILT,
        "create_time": now,
        "update_time": now,
        "error_message": "",
    }
    if not await stored.insert_tree(repo, doc):  # another call stored one meanwhile
        await stored.delete_leaves(repo, tree_id)
        return await build(repo, session_id, entries_hex, now)
    return doc


async def refresh_validation(repo: Repository, tree: Doc, now: datetime) -> tuple[Doc, Doc | None]:
    """Marks a built tree validated once its root is anchored in a final block."""
    anchoring = await repo.anchoring(tree["session_id"])
    anchored = (
        anchoring is not None
        and anchoring["status"] == anchors.CONFIRMED
        and anchoring["merkle_root"] == tree["root_hash"]
    )
    if anchored and tree["status"] != VALIDATED:
        await stored.set_status(repo, tree["session_id"], VALIDATED, now)
        tree = {**tree, "status": VALIDATED, "update_time": now}
    elif (
        anchoring is not None
        and anchoring["status"] == anchors.CONFIRMED
        and anchoring["merkle_root"] != tree["root_hash"]
        and tree["status"] != FAILED
    ):
        message = "the anchored root differs from the tree's root"
        await stored.set_status(repo, tree["session_id"], FAILED, now, message)
        tree = {**tree, "status": FAILED, "update_time": now, "error_message": message}
    return tree, anchoring if anchored else None


def to_proto(tree: Doc, entries: Sequence[bytes] | None = None) -> mpb.MerkleTree:
    """A stored tree as the contract shows it."""
    result = mpb.MerkleTree(
        tree_id=tree["tree_id"],
        session_id=tree["session_id"],
        root_hash=tree["root_hash"],
        tree_height=int(tree["tree_height"]),
        leaf_count=int(tree["leaf_count"]),
        status=STATUS.get(tree["status"], mpb.MERKLE_TREE_STATUS_UNSPECIFIED),
        chunk_hashes=[e.hex() for e in entries or ()],
        error_message=tree.get("error_message") or "",
    )
    for name in ("create_time", "update_time"):
        value = optional_timestamp(tree.get(name))
        if value is not None:
            getattr(result, name).CopyFrom(value)
    return result


@dataclass(frozen=True)
class LeafCheck:
    """What VerifyMerkleProof found."""

    verified: bool
    computed_root: str = ""
    leaf_exists: bool = False


class Trees:
    """The stored session trees of one validator, as the Merkle rpcs ask for them."""

    def __init__(self, repo: Repository, clock: Clock) -> None:
        self.repo = repo
        self.clock = clock

    async def build(self, session_id: str, chunk_hashes: Sequence[str]) -> Doc:
        """Builds and stores the tree of a session's chunk hashes."""
        return await build(self.repo, session_id, list(chunk_hashes), self.clock.now())

    async def get(self, root_hash: str, *, with_leaves: bool) -> tuple[Doc, list[bytes] | None]:
        """A stored tree by root (its validation brought up to date), with its leaves."""
        tree = await stored.by_root(self.repo, root_hash)
        if tree is None:
            raise not_found("tree")
        tree, _ = await refresh_validation(self.repo, tree, self.clock.now())
        entries = await stored.entries_of(self.repo, tree["tree_id"]) if with_leaves else None
        return tree, entries

    async def validation(self, session_id: str) -> tuple[Doc, Doc | None]:
        """A session's tree and the anchoring that validates it, if any."""
        tree = await stored.by_session(self.repo, session_id)
        if tree is None:
            raise not_found("tree of the session")
        return await refresh_validation(self.repo, tree, self.clock.now())

    async def check(
        self, leaf: bytes, leaf_index: int, tree_size: int, path: Sequence[bytes], root_hash: str
    ) -> LeafCheck:
        """Whether an inclusion proof leads to ``root_hash``, and whether a stored tree of
        that root holds the leaf."""
        try:
            computed = merkle.root_from_proof(leaf, leaf_index, tree_size, list(path))
        except merkle.MerkleError:
            return LeafCheck(verified=False)
        exists = False
        tree = await stored.by_root(self.repo, root_hash)
        if tree is not None and int(tree["leaf_count"]) == tree_size:
            entries = await stored.entries_of(self.repo, tree["tree_id"])
            exists = merkle.leaf_hash(entries[leaf_index]) == leaf
        return LeafCheck(computed.hex() == root_hash, computed.hex(), exists)
