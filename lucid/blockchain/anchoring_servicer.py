"""AnchoringService: session roots into the chain, and the proofs that they are there."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from pymongo.errors import DuplicateKeyError

from lucid.blockchain import anchors, blocks, transactions
from lucid.blockchain.keys import verify_signature
from lucid.blockchain.node import ChainNode, Ready
from lucid.blockchain.repository import Doc, doc_to_transaction
from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.blockchain.v1 import anchoring_pb2_grpc
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.lib import canonical, manifestdoc, merkle
from lucid.lib.ids import new_id
from lucid.runtime import paging
from lucid.runtime.context import current_principal
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError, not_found
from lucid.runtime.wire import duration, optional_timestamp


def _already(doc: Doc) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_ALREADY_EXISTS,
        f"session {doc['session_id']} is already anchored ({doc['status']})",
        metadata={"anchoring_id": doc["anchoring_id"], "session_id": doc["session_id"]},
    )


def _check_owner(doc: Doc) -> None:
    """Users see the anchorings of their own sessions; services and admins see all."""
    principal = current_principal()
    user = principal.user
    if user is not None and not principal.is_admin and doc.get("owner_user_id") != user.user_id:
        raise not_found("anchoring")


class AnchoringServicer(anchoring_pb2_grpc.AnchoringServiceServicer):
    """Anchors as one validator sees them."""

    def __init__(self, node: ChainNode) -> None:
        self.node = node

    def _proto(self, ready: Ready, doc: Doc) -> apb.SessionAnchoring:
        return anchors.to_proto(
            doc,
            tip_height=ready.ledger.tip.height,
            interval_s=self.node.config.block_interval_s,
            leader_timeout_s=self.node.config.leader_timeout_s,
        )

    async def _anchoring(self, session_id: str) -> Doc:
        doc = await self.node.repo.anchoring(session_id)
        if doc is None:
            raise not_found(f"anchoring of session {session_id}")
        _check_owner(doc)
        return doc

    async def AnchorSession(
        self, request: apb.AnchorSessionRequest, context: Any
    ) -> apb.AnchorSessionResponse:
        ready = self.node.require()
        repo = self.node.repo
        data = request.manifest_data
        generate_time = data.create_time.ToDatetime(tzinfo=UTC)
        signed_document = manifestdoc.signed_document(
            manifest_id=data.manifest_id,
            manifest_version=data.manifest_version,
            session_id=request.session_id,
            owner_user_id=data.owner_user_id,
            merkle_root=request.merkle_root,
            total_checksum=data.total_checksum,
            generate_time=generate_time,
        )
        if not verify_signature(request.signer_public_key, signed_document, request.user_signature):
            raise LucidError(
                ErrorCode.ERROR_CODE_CHAIN_SIGNATURE_INVALID,
                "the manifest signature does not verify with signer_public_key",
                field_violations=[FieldViolation("user_signature", "does not verify")],
            )
        existing = await repo.anchoring(request.session_id)
        if existing is not None and existing["status"] in anchors.OPEN:
            raise _already(existing)
        if await repo.anchored_sessions_among([request.session_id]):
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"session {request.session_id} is already anchored in a final block",
            )
        payload = anchors.payload_of(request)
        body = pb.TransactionBody(
            type=pb.TRANSACTION_TYPE_SESSION_ANCHOR,
            session_anchor=payload,
            fee_micros=0,
            create_time=self.node.stamp(),
            nonce=new_id(),
        )
        signed = self.node.sign_body(body)
        now = self.node.clock.now()
        checked = transactions.check(signed, ready.validators, now=now)
        doc = anchors.doc_from_tx(checked, now=now, timeout_s=self.node.config.anchoring_timeout_s)
        if existing is not None:
            if not await repo.replace_anchoring(request.session_id, doc, anchors.REPLACEABLE):
                raise _already(await repo.anchoring(request.session_id) or existing)
        else:
            try:
                await repo.insert_anchoring(doc)
            except DuplicateKeyError:
                raise _already(await repo.anchoring(request.session_id) or doc) from None
        try:
            await ready.ledger.accept(signed)
        except LucidError:
            if existing is not None:
                await repo.replace_anchoring(request.session_id, existing)
            else:
                await repo.delete_anchoring(request.session_id, doc["anchoring_id"])
            raise
        return apb.AnchorSessionResponse(anchoring=self._proto(ready, doc))

    async def GetSessionAnchoring(
        self, request: apb.GetSessionAnchoringRequest, context: Any
    ) -> apb.GetSessionAnchoringResponse:
        ready = self.node.require()
        doc = await self._anchoring(request.session_id)
        return apb.GetSessionAnchoringResponse(anchoring=self._proto(ready, doc))

    async def VerifyAnchoring(
        self, request: apb.VerifyAnchoringRequest, context: Any
    ) -> apb.VerifyAnchoringResponse:
        ready = self.node.require()
        doc = await self.node.repo.anchoring(request.session_id)
        if doc is None:
            raise not_found(f"anchoring of session {request.session_id}")
        response = apb.VerifyAnchoringResponse(
            status=anchors.STATUS.get(doc["status"], apb.ANCHORING_STATUS_UNSPECIFIED),
            tx_hash=doc["tx_hash"],
        )
        if doc["status"] != anchors.CONFIRMED:
            return response
        found = await ready.ledger.tx_index(doc["tx_hash"])
        if found is None:
            return response
        tx_doc, block = found
        response.block_height = block.header.height
        response.block_hash = block.hash
        response.confirmations = ready.ledger.tip.height - block.header.height + 1
        canonical_body = tx_doc["canonical"].encode()
        body = transactions.body_from_encoding(canonical_body)
        index = int(tx_doc["transaction_index"])
        proof = blocks.inclusion_proof(block.tx_hashes, index)
        response.merkle_proof_valid = canonical.sha256_hex(canonical_body) == doc[
            "tx_hash"
        ] and merkle.verify_inclusion(
            merkle.leaf_hash(bytes.fromhex(doc["tx_hash"])),
            index,
            proof.tree_size,
            [bytes.fromhex(node) for node in proof.audit_path],
            bytes.fromhex(block.header.merkle_root),
        )
        response.verified = (
            response.merkle_proof_valid
            and body.session_anchor.session_id == request.session_id
            and body.session_anchor.merkle_root == request.merkle_root == doc["merkle_root"]
            and request.block_height in (0, block.header.height)
        )
        return response

    async def GetAnchoringProof(
        self, request: apb.GetAnchoringProofRequest, context: Any
    ) -> apb.GetAnchoringProofResponse:
        ready = self.node.require()
        doc = await self._anchoring(request.session_id)
        found = (
            await ready.ledger.tx_index(doc["tx_hash"])
            if doc["status"] == anchors.CONFIRMED
            else None
        )
        if found is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"the anchor of session {request.session_id} is not in a final block yet "
                f"({doc['status']})",
            )
        tx_doc, block = found
        proof = blocks.inclusion_proof(block.tx_hashes, int(tx_doc["transaction_index"]))
        bare = pb.Block()
        bare.CopyFrom(block)
        del bare.tx_hashes[:]
        return apb.GetAnchoringProofResponse(
            anchoring=self._proto(ready, doc),
            transaction=doc_to_transaction(tx_doc, tip_height=ready.ledger.tip.height),
            canonical_transaction_body=tx_doc["canonical"].encode(),
            transaction_proof=proof,
            block=bare,
            canonical_block_header=blocks.encoded_header(block.header),
        )

    async def GetAnchoringServiceStatus(
        self, request: apb.GetAnchoringServiceStatusRequest, context: Any
    ) -> apb.GetAnchoringServiceStatusResponse:
        self.node.require()
        repo = self.node.repo
        counts = {
            status: await repo.count_anchorings({"status": status}) for status in anchors.STATUS
        }
        response = apb.GetAnchoringServiceStatusResponse(
            pending_count=counts[anchors.PENDING],
            processing_count=counts[anchors.PROCESSING],
            confirmed_count=counts[anchors.CONFIRMED],
            failed_count=counts[anchors.FAILED],
            expired_count=counts[anchors.EXPIRED],
            batch_size=self.node.config.anchoring_batch_size,
            timeout=duration(self.node.config.anchoring_timeout_s),
        )
        oldest = await repo.oldest_anchoring(anchors.PENDING)
        if oldest is not None:
            value = optional_timestamp(oldest.get("submit_time"))
            if value is not None:
                response.oldest_pending_time.CopyFrom(value)
        return response

    async def ListAnchorings(
        self, request: apb.ListAnchoringsRequest, context: Any
    ) -> apb.ListAnchoringsResponse:
        ready = self.node.require()
        names = [anchors.STATUS_NAMES[s] for s in request.statuses] or [
            anchors.PENDING,
            anchors.PROCESSING,
        ]
        page = paging.page(request)
        query = {"status": {"$in": names}}
        total = await self.node.repo.count_anchorings(query)
        docs = await self.node.repo.anchoring_docs(query, skip=page.offset, limit=page.size)
        return apb.ListAnchoringsResponse(
            anchorings=[self._proto(ready, d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )
