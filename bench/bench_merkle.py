"""RFC 9162 Merkle trees (lucid.lib.merkle) at a million leaves, next to the bare SHA-256
calls the same work needs: the root (n - 1 node hashes), proof generation from a tree
kept in memory, and proof verification (⌈log2 n⌉ node hashes each).

The machine is shared, so each ratio is taken side by side: the Merkle work and its
bare SHA-256 alternate for ``ROUNDS`` rounds and the fastest round of each is kept."""

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
ROUNDS = 3


def _bare_nodes(count: int, left: bytes, right: bytes) -> float:
    """Seconds for ``count`` node hashes SHA-256(0x01 ‖ left ‖ right), nothing else."""
    sha256 = hashlib.sha256
    started = time.perf_counter()
    for _ in range(count):
        sha256(b"\x01" + left + right).digest()
    return time.perf_counter() - started


async def run(ctx: BenchContext) -> list[Figure]:
    entries = [os.urandom(32) for _ in range(LEAVES)]
    started = time.perf_counter()
    leaves = [merkle.leaf_hash(e) for e in entries]
    leaf_s = time.perf_counter() - started

    root_s = bare_root_s = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        root = merkle.root(leaves)
        root_s = min(root_s, time.perf_counter() - started)
        bare_root_s = min(bare_root_s, _bare_nodes(LEAVES - 1, leaves[0], leaves[1]))

    started = time.perf_counter()
    tree = merkle.MerkleTree(leaves)
    assert tree.root == root
    build_s = time.perf_counter() - started
    picks = random.Random(7).sample(range(LEAVES), PROOFS)
    started = time.perf_counter()
    proofs = [tree.proof(i) for i in picks]
    proof_s = (time.perf_counter() - started) / PROOFS

    depth = math.ceil(math.log2(LEAVES))
    verify_s = bare_verify_s = float("inf")
    for _ in range(ROUNDS * 2):
        started = time.perf_counter()
        for index, proof in zip(picks, proofs, strict=True):
            assert merkle.verify_inclusion(leaves[index], index, LEAVES, proof, root)
        verify_s = min(verify_s, (time.perf_counter() - started) / PROOFS)
        bare = _bare_nodes(PROOFS * depth, leaves[0], leaves[1]) / PROOFS
        bare_verify_s = min(bare_verify_s, bare)

    return [
        Figure(f"leaf hashes of {LEAVES:,} entries", leaf_s, "s"),
        Figure(f"root of {LEAVES:,} leaves (streamed, O(log n) nodes held)", root_s, "s"),
        Figure(f"bare SHA-256 of the {LEAVES - 1:,} node hashes it needs", bare_root_s, "s"),
        Figure("root / bare SHA-256", root_s / bare_root_s, "ratio", at_most=1.2),
        Figure("tree kept for proofs (every subtree root memoised)", build_s, "s"),
        Figure("inclusion proof from the kept tree", proof_s * 1e6, "µs/proof"),
        Figure(f"proof verification ({depth} node hashes)", verify_s * 1e6, "µs/proof"),
        Figure(f"bare SHA-256 of {depth} node hashes", bare_verify_s * 1e6, "µs"),
        Figure("verification / bare SHA-256", verify_s / bare_verify_s, "ratio", at_most=1.2),
    ]
