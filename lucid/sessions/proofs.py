"""Chunk proofs: everything needed to check offline that a chunk belongs to an
anchored session (the check itself is ``lucid.lib.chunkproof``, shared with replay).

A proof joins (1) the chunk's leaf entry (SHA-256 of its stored blob) and its
RFC 9162 inclusion proof to the session root, (2) the signed manifest facts, and
(3) from the chain's ``GetAnchoringProof``: the session_anchor transaction, its
inclusion proof to the block's transaction root, and the block header with the
proposer's signature and the validator approvals.
"""

from __future__ import annotations

from collections.abc import Sequence

from lucid.blockchain.v1 import anchoring_pb2
from lucid.common.v1 import proofs_pb2
from lucid.lib import merkle
from lucid.sessions.store.repository import Doc
from lucid.sessions.v1 import chunks_pb2, sessions_pb2


def _inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> proofs_pb2.InclusionProof:
    return proofs_pb2.InclusionProof(
        leaf_index=leaf_index,
        tree_size=tree_size,
        leaf_hash=leaf.hex(),
        audit_path=[p.hex() for p in path],
        root_hash=root.hex(),
    )


def anchor_proof(chain: anchoring_pb2.GetAnchoringProofResponse) -> chunks_pb2.AnchorProof:
    """The chain part of a chunk proof, from the chain's GetAnchoringProof."""
    block = chain.block
    return chunks_pb2.AnchorProof(
        anchoring_id=chain.anchoring.anchoring_id,
        status=int(chain.anchoring.status),  # type: ignore[arg-type]
        tx_hash=chain.transaction.tx_hash or chain.anchoring.tx_hash,
        canonical_transaction_body=chain.canonical_transaction_body,
        transaction_public_key=chain.transaction.signed.public_key,
        transaction_signature=chain.transaction.signed.signature,
        transaction_proof=chain.transaction_proof,
        block_header=block.header,
        canonical_block_header=chain.canonical_block_header,
        block_hash=block.hash,
        proposer_public_key=block.proposer_public_key,
        proposer_signature=block.proposer_signature,
        approvals=block.approvals,
        validator_count=block.validator_count,
        confirmations=chain.anchoring.confirmations or block.confirmations,
        final=block.final,
    )


def build_chunk_proof(
    session: Doc,
    *,
    manifest: Doc,
    chunks: Sequence[Doc],
    chunk: Doc,
    signed_document: bytes,
    chain: anchoring_pb2.GetAnchoringProofResponse | None,
) -> chunks_pb2.ChunkProof:
    """The proof of one chunk of a finalized session."""
    leaves = [merkle.leaf_hash(bytes.fromhex(c["merkle_hash"])) for c in chunks]
    tree = merkle.MerkleTree(leaves)
    index = int(chunk["sequence_number"]) - 1
    attestation = chunks_pb2.ManifestAttestation(
        manifest_id=manifest["_id"],
        manifest_version=manifest["manifest_version"],
        owner_user_id=manifest["owner_user_id"],
        total_checksum=manifest["total_checksum"],
        signed_document=signed_document,
        signature=manifest["signature"],
        signer_public_key=manifest["signer_public_key"],
    )
    attestation.generate_time.FromDatetime(manifest["generate_time"])
    proof = chunks_pb2.ChunkProof(
        session_id=session["_id"],
        chunk_id=chunk["_id"],
        sequence_number=int(chunk["sequence_number"]),
        merkle_hash=chunk["merkle_hash"],
        hash_algorithm=sessions_pb2.HASH_ALGORITHM_SHA256,
        chunk_proof=_inclusion(index, tree.size, leaves[index], tree.proof(index), tree.root),
        merkle_root=manifest["merkle_root"],
        manifest=attestation,
    )
    if chain is not None:
        proof.anchor.CopyFrom(anchor_proof(chain))
    return proof
