"""``lucid.blockchain.v1.MerkleService``: session trees built, stored, validated; inclusion
proofs checked (the trees are ``lucid.blockchain.trees``)."""

from __future__ import annotations

from typing import Any

from lucid.blockchain import trees
from lucid.blockchain.trees import Trees
from lucid.blockchain.v1 import merkle_pb2 as mpb
from lucid.blockchain.v1 import merkle_pb2_grpc


class MerkleServicer(merkle_pb2_grpc.MerkleServiceServicer):
    """Translates the Merkle rpcs to the trees of one validator."""

    def __init__(self, trees: Trees) -> None:
        self.trees = trees

    async def BuildMerkleTree(
        self, request: mpb.BuildMerkleTreeRequest, context: Any
    ) -> mpb.BuildMerkleTreeResponse:
        tree = await self.trees.build(request.session_id, request.chunk_hashes)
        return mpb.BuildMerkleTreeResponse(
            tree_id=tree["tree_id"],
            root_hash=tree["root_hash"],
            tree_height=int(tree["tree_height"]),
            leaf_count=int(tree["leaf_count"]),
        )

    async def GetMerkleTree(
        self, request: mpb.GetMerkleTreeRequest, context: Any
    ) -> mpb.GetMerkleTreeResponse:
        tree, entries = await self.trees.get(request.root_hash, with_leaves=request.include_leaves)
        return mpb.GetMerkleTreeResponse(tree=trees.to_proto(tree, entries))

    async def GetMerkleValidation(
        self, request: mpb.GetMerkleValidationRequest, context: Any
    ) -> mpb.GetMerkleValidationResponse:
        tree, anchoring = await self.trees.validation(request.session_id)
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
        found = await self.trees.check(
            bytes.fromhex(request.leaf_hash),
            request.leaf_index,
            request.tree_size,
            [bytes.fromhex(node) for node in request.audit_path],
            request.root_hash,
        )
        return mpb.VerifyMerkleProofResponse(
            verified=found.verified,
            computed_root=found.computed_root,
            leaf_exists=found.leaf_exists,
        )
