"""RFC 9162 Merkle trees (lucid.lib.merkle) at a million leaves, next to the bare SHA-256
calls the same work needs: the root (n - 1 node hashes), proof generation from a tree
kept in memory, and proof verification (⌈log2 n⌉ node hashes each).

The machine is shared, so each ratio is taken side by side: the Merkle work and its
bare SHA-256 alternate for ``ROUNDS`` rounds and the fastest round of each is kept,
timed in CPU time of this thread (``time.thread_time``), which other processes
competing for the cores do not inflate the way they inflate wall time."""

from __future__ import annotations

import hashlib
import math
import os
import random
import time

from bench.common import BenchContext, Figure
from lucid.lib import merkle

LEAVES = 1_000_000
PROOFS = 2_000
clock = time.thread_time
ROUNDS = 3


def _bare_nodes(count: int, left: bytes, right: bytes) -> float:
    """Seconds for ``count`` node hashes SHA-256(0x01 ‖ left ‖ right), nothing else."""
    sha256 = hashlib.sha256
    started = clock()
    for _ in range(count):
        sha256(b"\x01" + left + right).digest()
    return clock() - started


def _bare_siblings(siblings: list[bytes], node: bytes) -> float:
    """Seconds for one node hash SHA-256(0x01 ‖ sibling ‖ node) per sibling of the proofs:
    the hashes verification needs, over the same hashes in memory, nothing else."""
    sha256 = hashlib.sha256
    started = clock()
    for sibling in siblings:
        sha256(b"\x01" + sibling + node).digest()
    return clock() - started


async def run(ctx: BenchContext) -> list[Figure]:
    entries = [os.urandom(32) for _ in range(LEAVES)]
    started = clock()
    leaves = [merkle.leaf_hash(e) for e in entries]
    leaf_s = clock() - started

    root_s = bare_root_s = float("inf")
    for _ in range(ROUNDS):
        started = clock()
        root = merkle.root(leaves)
        root_s = min(root_s, clock() - started)
        bare_root_s = min(bare_root_s, _bare_nodes(LEAVES - 1, leaves[0], leaves[1]))

    started = clock()
    tree = merkle.MerkleTree(leaves)
    assert tree.root == root
    build_s = clock() - started
    picks = random.Random(7).sample(range(LEAVES), PROOFS)
    started = clock()
    proofs = [tree.proof(i) for i in picks]
    proof_s = (clock() - started) / PROOFS

    depth = math.ceil(math.log2(LEAVES))
    cases = [(leaves[i], i, p) for i, p in zip(picks, proofs, strict=True)]
    siblings = [sibling for proof in proofs for sibling in proof]
    verify_s = bare_verify_s = float("inf")
    for _ in range(ROUNDS * 2):
        started = clock()
        for leaf, index, proof in cases:
            assert merkle.verify_inclusion(leaf, index, LEAVES, proof, root)
        verify_s = min(verify_s, (clock() - started) / PROOFS)
        bare = _bare_siblings(siblings, root) / PROOFS
        bare_verify_s = min(bare_verify_s, bare)

    return [
        Figure(f"leaf hashes of {LEAVES:,} entries", leaf_s, "s"),
        Figure(f"root of {LEAVES:,} leaves (streamed, O(log n) nodes held)", root_s, "s"),
        Figure(f"bare SHA-256 of the {LEAVES - 1:,} node hashes it needs", bare_root_s, "s"),
        Figure("root / bare SHA-256", root_s / bare_root_s, "ratio", at_most=1.2),
        Figure("tree kept for proofs (every subtree root memoised)", build_s, "s"),
        Figure("inclusion proof from the kept tree", proof_s * 1e6, "µs/proof"),
        Figure(f"proof verification ({depth} node hashes)", verify_s * 1e6, "µs/proof"),
        Figure(f"bare SHA-256 of its ~{depth} node hashes", bare_verify_s * 1e6, "µs"),
        Figure("verification / bare SHA-256", verify_s / bare_verify_s, "ratio", at_most=1.2),
    ]
