"""``lucid.blockchain.v1.AnchoringService``: session roots into the chain, and the proofs
that they are there, translated to the domain (``lucid.blockchain.anchoring``)."""

from __future__ import annotations

from typing import Any

from lucid.blockchain import anchors, blocks
from lucid.blockchain.anchoring import Anchoring
from lucid.blockchain.node import Ready
from lucid.blockchain.store.chain import Doc, doc_to_transaction
from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.blockchain.v1 import anchoring_pb2_grpc
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.runtime import paging
from lucid.runtime.context import current_principal
from lucid.runtime.wire import duration, optional_timestamp


class AnchoringServicer(anchoring_pb2_grpc.AnchoringServiceServicer):
    """Anchors as one validator sees them."""

    def __init__(self, anchoring: Anchoring) -> None:
        self.anchoring = anchoring

    def _proto(self, ready: Ready, doc: Doc) -> apb.SessionAnchoring:
        config = self.anchoring.node.config
        return anchors.to_proto(
            doc,
            tip_height=ready.ledger.tip.height,
            interval_s=config.block_interval_s,
            leader_timeout_s=config.leader_timeout_s,
        )

    async def AnchorSession(
        self, request: apb.AnchorSessionRequest, context: Any
    ) -> apb.AnchorSessionResponse:
        doc = await self.anchoring.anchor(request)
        return apb.AnchorSessionResponse(anchoring=self._proto(self.anchoring.require(), doc))

    async def GetSessionAnchoring(
        self, request: apb.GetSessionAnchoringRequest, context: Any
    ) -> apb.GetSessionAnchoringResponse:
        ready = self.anchoring.require()
        doc = await self.anchoring.anchoring(request.session_id, current_principal())
        return apb.GetSessionAnchoringResponse(anchoring=self._proto(ready, doc))

    async def VerifyAnchoring(
        self, request: apb.VerifyAnchoringRequest, context: Any
    ) -> apb.VerifyAnchoringResponse:
        found = await self.anchoring.verify(
            request.session_id, request.merkle_root, request.block_height
        )
        doc = found.anchoring
        response = apb.VerifyAnchoringResponse(
            status=anchors.STATUS.get(doc["status"], apb.ANCHORING_STATUS_UNSPECIFIED),
            tx_hash=doc["tx_hash"],
        )
        if found.block is not None:
            response.block_height = found.block.header.height
            response.block_hash = found.block.hash
            response.confirmations = found.confirmations
            response.merkle_proof_valid = found.merkle_proof_valid
            response.verified = found.verified
        return response

    async def GetAnchoringProof(
        self, request: apb.GetAnchoringProofRequest, context: Any
    ) -> apb.GetAnchoringProofResponse:
        ready = self.anchoring.require()
        found = await self.anchoring.proof(request.session_id, current_principal())
        bare = pb.Block()
        bare.CopyFrom(found.block)
        del bare.tx_hashes[:]
        return apb.GetAnchoringProofResponse(
            anchoring=self._proto(ready, found.anchoring),
            transaction=doc_to_transaction(found.transaction, tip_height=ready.ledger.tip.height),
            canonical_transaction_body=found.transaction["canonical"].encode(),
            transaction_proof=found.proof,
            block=bare,
            canonical_block_header=blocks.encoded_header(found.block.header),
        )

    async def GetAnchoringServiceStatus(
        self, request: apb.GetAnchoringServiceStatusRequest, context: Any
    ) -> apb.GetAnchoringServiceStatusResponse:
        counts, oldest = await self.anchoring.counts()
        config = self.anchoring.node.config
        response = apb.GetAnchoringServiceStatusResponse(
            pending_count=counts[anchors.PENDING],
            processing_count=counts[anchors.PROCESSING],
            confirmed_count=counts[anchors.CONFIRMED],
            failed_count=counts[anchors.FAILED],
            expired_count=counts[anchors.EXPIRED],
            batch_size=config.anchoring_batch_size,
            timeout=duration(config.anchoring_timeout_s),
        )
        value = optional_timestamp(oldest.get("submit_time")) if oldest else None
        if value is not None:
            response.oldest_pending_time.CopyFrom(value)
        return response

    async def ListAnchorings(
        self, request: apb.ListAnchoringsRequest, context: Any
    ) -> apb.ListAnchoringsResponse:
        ready = self.anchoring.require()
        page = paging.page(request)
        docs, total = await self.anchoring.page(
            [anchors.STATUS_NAMES[s] for s in request.statuses],
            offset=page.offset,
            limit=page.size,
        )
        return apb.ListAnchoringsResponse(
            anchorings=[self._proto(ready, d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )
