"""MerkleService: session trees built, stored, validated; inclusion proofs checked."""

from __future__ import annotations

from typing import Any

from lucid.blockchain import trees
from lucid.blockchain.node import ChainNode
from lucid.blockchain.v1 import merkle_pb2 as mpb
from lucid.blockchain.v1 import merkle_pb2_grpc
from lucid.lib import merkle
from lucid.runtime.errors import not_found


class MerkleServicer(merkle_pb2_grpc.MerkleServiceServicer):
    """Trees of one validator."""

    def __init__(self, node: ChainNode) -> None:
        self.node = node

    async def BuildMerkleTree(
        self, request: mpb.BuildMerkleTreeRequest, context: Any
    ) -> mpb.BuildMerkleTreeResponse:
        tree = await trees.build(
            self.node.repo, request.session_id, list(request.chunk_hashes), self.node.clock.now()
        )
        return mpb.BuildMerkleTreeResponse(
            tree_id=tree["tree_id"],
            root_hash=tree["root_hash"],
            tree_height=int(tree["tree_height"]),
            leaf_count=int(tree["leaf_count"]),
        )

    async def GetMerkleTree(
        self, request: mpb.GetMerkleTreeRequest, context: Any
    ) -> mpb.GetMerkleTreeResponse:
        tree = await trees.by_root(self.node.repo, request.root_hash)
        if tree is None:
            raise not_found("tree")
        tree, _ = await trees.refresh_validation(self.node.repo, tree, self.node.clock.now())
        entries = (
            await trees.entries_of(self.node.repo, tree["tree_id"])
            if request.include_leaves
            else None
        )
        return mpb.GetMerkleTreeResponse(tree=trees.to_proto(tree, entries))

    async def GetMerkleValidation(
        self, request: mpb.GetMerkleValidationRequest, context: Any
    ) -> mpb.GetMerkleValidationResponse:
        tree = await trees.by_session(self.node.repo, request.session_id)
        if tree is None:
            raise not_found("tree of the session")
        tree, anchoring = await trees.refresh_validation(
            self.node.repo, tree, self.node.clock.now()
        )
        response = mpb.GetMerkleValidationResponse(
            session_id=tree["session_id"],
            root_hash=tree["root_hash"],
            status=trees.STATUS.get(tree["status"], mpb.MERKLE_TREE_STATUS_UNSPECIFIED),
            anchored=anchoring is not None,
            error_message=tree.get("error_message") or "",
        )
        if anchoring is not None:
            response.block_height = int(anchoring["block_height"])
        return response

    async def VerifyMerkleProof(
        self, request: mpb.VerifyMerkleProofRequest, context: Any
    ) -> mpb.VerifyMerkleProofResponse:
        leaf = bytes.fromhex(request.leaf_hash)
        path = [bytes.fromhex(node) for node in request.audit_path]
        try:
            computed = merkle.root_from_proof(leaf, request.leaf_index, request.tree_size, path)
        except merkle.MerkleError:
            return mpb.VerifyMerkleProofResponse(verified=False)
        response = mpb.VerifyMerkleProofResponse(
            verified=computed.hex() == request.root_hash, computed_root=computed.hex()
        )
        tree = await trees.by_root(self.node.repo, request.root_hash)
        if tree is not None and int(tree["leaf_count"]) == request.tree_size:
            entries = await trees.entries_of(self.node.repo, tree["tree_id"])
            response.leaf_exists = merkle.leaf_hash(entries[request.leaf_index]) == leaf
        return response
