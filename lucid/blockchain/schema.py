"""The collections of one validator: its own replica of the chain and its own state.

Every name is prefixed with the validator's prefix (``chain_v<N>_``), so the
validators of one database never share a document and replicas can disagree and
be checked against each other. Uniqueness rides on ``_id`` (a block's height, a
transaction's hash, a session id, a ballot's height:phase:round, ...); the other
indexes serve lists and queries on MongoDB.
"""

from __future__ import annotations

from lucid.runtime.schema import CollectionSpec, IndexSpec

BLOCKS = "blocks"
BLOCK_INDEX = "block_index"
TRANSACTIONS = "transactions"
MEMPOOL = "mempool"
ANCHOR_INDEX = "anchor_index"
TASK_FACTS = "task_facts"
VOTE_FACTS = "vote_facts"
ANCHORINGS = "anchorings"
MERKLE_TREES = "merkle_trees"
MERKLE_LEAVES = "merkle_leaves"
BALLOTS = "ballots"
VOTING = "voting"
ROUNDS = "rounds"
TASK_PROOFS = "task_proofs"
VOTES = "votes"


def collections(prefix: str) -> tuple[CollectionSpec, ...]:
    """The collection specs of the validator whose collections start with ``prefix``."""

    def spec(name: str, *indexes: IndexSpec) -> CollectionSpec:
        return CollectionSpec(prefix + name, tuple(indexes), owner="blockchain")

    return (
        spec(
            BLOCKS,
            IndexSpec((("height", 1),), "height_unique", unique=True),
            IndexSpec((("hash", 1),), "hash_unique", unique=True),
            IndexSpec((("proposer_id", 1),), "proposer"),
        ),
        spec(BLOCK_INDEX),
        spec(
            TRANSACTIONS,
            IndexSpec((("block_height", 1), ("transaction_index", 1)), "block_position"),
            IndexSpec((("status", 1),), "status"),
        ),
        spec(
            MEMPOOL,
            IndexSpec((("submit_time", 1),), "submitted"),
            IndexSpec((("session_id", 1),), "session"),
        ),
        spec(ANCHOR_INDEX),
        spec(
            TASK_FACTS,
            IndexSpec((("proof_time", 1),), "proof_time"),
            IndexSpec((("node_id", 1),), "node"),
        ),
        spec(
            VOTE_FACTS,
            IndexSpec((("block_height", -1), ("transaction_index", -1)), "position"),
            IndexSpec((("target_id", 1), ("slot", 1)), "target_slot"),
        ),
        spec(
            ANCHORINGS,
            IndexSpec((("anchoring_id", 1),), "anchoring_unique", unique=True),
            IndexSpec((("status", 1), ("submit_time", 1)), "status_submitted"),
            IndexSpec((("tx_hash", 1),), "tx_hash"),
        ),
        spec(
            MERKLE_TREES,
            IndexSpec((("tree_id", 1),), "tree_unique", unique=True),
            IndexSpec((("root_hash", 1),), "root"),
        ),
        spec(MERKLE_LEAVES),
        spec(BALLOTS, IndexSpec((("height", 1),), "height")),
        spec(VOTING, IndexSpec((("height", 1),), "height")),
        spec(ROUNDS, IndexSpec((("height", -1), ("round", -1)), "height_round")),
        spec(TASK_PROOFS, IndexSpec((("proof_id", 1),), "proof_unique", unique=True)),
        spec(VOTES, IndexSpec((("vote_id", 1),), "vote_unique", unique=True)),
    )
