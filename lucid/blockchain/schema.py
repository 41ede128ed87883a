"""The collections of one validator: its own replica of the chain and its own state.

Every name is prefixed with the validator's prefix (``chain_v<N>_``), so the
validators of one database never share a document and replicas can disagree and
be checked against each other.
"""

from __future__ import annotations

from lucid.runtime.schema import CollectionSpec, IndexSpec

BLOCKS = "blocks"
TRANSACTIONS = "transactions"
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
            IndexSpec((("previous_hash", 1),), "previous_hash"),
            IndexSpec((("proposer_id", 1),), "proposer"),
        ),
        spec(
            TRANSACTIONS,
            IndexSpec((("tx_hash", 1),), "tx_hash_unique", unique=True),
            IndexSpec((("status", 1), ("submit_time", 1)), "status_submitted"),
            IndexSpec((("block_height", 1), ("transaction_index", 1)), "block_position"),
            IndexSpec((("session_id", 1),), "session"),
            IndexSpec((("task.proof_time", 1),), "task_time"),
        ),
        spec(
            ANCHORINGS,
            IndexSpec((("session_id", 1),), "session_unique", unique=True),
            IndexSpec((("anchoring_id", 1),), "anchoring_unique", unique=True),
            IndexSpec((("status", 1), ("submit_time", 1)), "status_submitted"),
            IndexSpec((("tx_hash", 1),), "tx_hash"),
        ),
        spec(
            MERKLE_TREES,
            IndexSpec((("tree_id", 1),), "tree_unique", unique=True),
            IndexSpec((("session_id", 1),), "session_unique", unique=True),
            IndexSpec((("root_hash", 1),), "root"),
        ),
        spec(
            MERKLE_LEAVES,
            IndexSpec((("tree_id", 1), ("page", 1)), "tree_page_unique", unique=True),
        ),
        spec(
            BALLOTS,
            IndexSpec((("height", 1), ("phase", 1), ("round", 1)), "one_per_round", unique=True),
        ),
        spec(VOTING, IndexSpec((("height", 1),), "height_unique", unique=True)),
        spec(
            ROUNDS,
            IndexSpec((("round_id", 1),), "round_unique", unique=True),
            IndexSpec((("height", -1), ("round", -1)), "height_round"),
        ),
        spec(
            TASK_PROOFS,
            IndexSpec((("proof_id", 1),), "proof_unique", unique=True),
            IndexSpec((("node_id", 1), ("slot", 1), ("task_type", 1)), "one_per_slot", unique=True),
        ),
        spec(
            VOTES,
            IndexSpec((("vote_id", 1),), "vote_unique", unique=True),
            IndexSpec(
                (("voter_id", 1), ("vote_type", 1), ("target_id", 1)), "one_per_target", unique=True
            ),
        ),
    )
