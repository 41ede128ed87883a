"""Merkle trees of RFC 9162 §2.1: the Certificate Transparency reference vectors, and
properties over every tree size up to 1000."""

from __future__ import annotations

import hashlib
import random

import pytest

from lucid.lib import merkle

# The reference inputs and tree heads of Certificate Transparency (RFC 6962 / 9162
# implementations share them): leaves D[0..7] and the root of each prefix D[0:n].
CT_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, audit path)
CT_PROOFS = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
LEAVES = [merkle.leaf_hash(d) for d in CT_INPUTS]


@pytest.mark.parametrize("size", range(9))
def test_reference_tree_heads(size: int) -> None:
    assert merkle.root(LEAVES[:size]).hex() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), CT_PROOFS)
def test_reference_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = merkle.inclusion_proof(LEAVES[:size], index)
    assert [p.hex() for p in proof] == path
    root = bytes.fromhex(CT_ROOTS[size])
    assert merkle.verify_inclusion(LEAVES[index], index, size, proof, root)


def test_one_leaf_root_is_its_leaf_hash_and_prefixes_separate_domains() -> None:
    data = b"chunk"
    assert merkle.root([merkle.leaf_hash(data)]) == merkle.leaf_hash(data)
    # An inner node presented as a leaf does not give the same root (domain separation).
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    inner = merkle.node_hash(a, b)
    assert merkle.root([merkle.leaf_hash(a + b)]) != inner
    # No duplication of the last node: [a, b, c] differs from [a, b, c, c].
    c = merkle.leaf_hash(b"c")
    assert merkle.root([a, b, c]) != merkle.root([a, b, c, c])


def test_every_proof_of_every_tree_up_to_1000_leaves_verifies() -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(1000)]
    rng = random.Random(9162)
    for size in range(1, 1001):
        tree = merkle.MerkleTree(leaves[:size])
        root = tree.root
        assert root == merkle.root(leaves[:size])
        # every leaf of the small trees, a sample of the large ones (all in total ~ 70k proofs)
        indexes = range(size) if size <= 300 else rng.sample(range(size), 40)
        for index in indexes:
            proof = tree.proof(index)
            assert len(proof) <= tree.height
            assert merkle.verify_inclusion(leaves[index], index, size, proof, root)


def test_any_flipped_bit_fails() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(37)]
    tree = merkle.MerkleTree(leaves)
    root = tree.root
    for index in (0, 17, 31, 32, 36):
        proof = tree.proof(index)
        for i, sibling in enumerate(proof):
            for bit in (0, 7, 255):
                flipped = bytearray(sibling)
                flipped[bit // 8] ^= 1 << (bit % 8)
                bad = [*proof[:i], bytes(flipped), *proof[i + 1 :]]
                assert not merkle.verify_inclusion(leaves[index], index, 37, bad, root)
        leaf = bytearray(leaves[index])
        leaf[0] ^= 1
        assert not merkle.verify_inclusion(bytes(leaf), index, 37, proof, root)
        assert not merkle.verify_inclusion(leaves[index], index ^ 1, 37, proof, root)
        assert not merkle.verify_inclusion(leaves[index], index, 1000, proof, root)
        assert not merkle.verify_inclusion(leaves[index], index, 37, proof[:-1], root)
        assert not merkle.verify_inclusion(leaves[index], index, 37, [*proof, proof[0]], root)


def test_bad_indexes_and_sizes_are_refused() -> None:
    with pytest.raises(merkle.MerkleError):
        merkle.inclusion_proof(LEAVES[:3], 3)
    with pytest.raises(merkle.MerkleError):
        merkle.root([b"short"])
    assert not merkle.verify_inclusion(LEAVES[0], 0, 0, [], merkle.EMPTY_ROOT)
    assert not merkle.verify_inclusion(LEAVES[0], -1, 1, [], LEAVES[0])


def test_streaming_root_of_a_million_leaves_keeps_log_n_nodes() -> None:
    """A million leaves stream through at most log2(n)+1 pending subtree roots, and the
    streamed head equals the recursive definition (checked on a prefix too)."""
    n = 1_000_000
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    builder = merkle.RootBuilder()
    peak = 0
    for leaf in leaves:
        builder.add(leaf)
        peak = max(peak, len(builder.pending))
    assert peak <= n.bit_length()
    assert len(builder.pending) == bin(n).count("1")
    assert builder.root() == merkle.MerkleTree(leaves).root
    prefix = leaves[:12345]
    assert merkle.root(prefix) == merkle.subtree_root(prefix, 0, len(prefix))
