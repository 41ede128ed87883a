"""Anchoring sessions into the chain as the anchoring rpcs ask for it: checking the
manifest's signature, queueing one anchor per session (replacing a failed or expired
one) and taking it back if the ledger refuses it, and answering what is anchored
where, with the proofs (spec 02 §3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pymongo.errors import DuplicateKeyError

from lucid.blockchain import anchors, blocks, transactions
from lucid.blockchain.keys import verify_signature
from lucid.blockchain.node import ChainNode, Ready
from lucid.blockchain.store.chain import Doc
from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.common.v1 import proofs_pb2
from lucid.lib import canonical, manifestdoc, merkle
from lucid.lib.ids import new_id
from lucid.runtime.context import Principal
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError, not_found
from lucid.runtime.wire import moment


def _already(doc: Doc) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_ALREADY_EXISTS,
        f"session {doc['session_id']} is already anchored ({doc['status']})",
        metadata={"anchoring_id": doc["anchoring_id"], "session_id": doc["session_id"]},
    )


def _check_owner(doc: Doc, caller: Principal) -> None:
    """Users see the anchorings of their own sessions; services and admins see all."""
    user = caller.user
    if user is not None and not caller.is_admin and doc.get("owner_user_id") != user.user_id:
        raise not_found("anchoring")


@dataclass(frozen=True)
class Verification:
    """What VerifyAnchoring found."""

    anchoring: Doc
    block: pb.Block | None = None
    confirmations: int = 0
    merkle_proof_valid: bool = False
    verified: bool = False


@dataclass(frozen=True)
class AnchorProof:
    """An anchor in a final block, with everything needed to check it offline."""

    anchoring: Doc
    transaction: Doc
    proof: proofs_pb2.InclusionProof
    block: pb.Block


class Anchoring:
    """Session anchors as one validator sees them."""

    def __init__(self, node: ChainNode) -> None:
        self.node = node

    def require(self) -> Ready:
        """The node's ledger and validators; UNAVAILABLE until it has joined the chain."""
        return self.node.require()

    async def anchoring(self, session_id: str, caller: Principal) -> Doc:
        """A session's anchoring, if the caller may see it."""
        doc = await self.node.repo.anchoring(session_id)
        if doc is None:
            raise not_found(f"anchoring of session {session_id}")
        _check_owner(doc, caller)
        return doc

    async def anchor(self, request: apb.AnchorSessionRequest) -> Doc:
        """Queues the anchor of a signed manifest's root; one open anchor per session."""
        ready = self.require()
        repo = self.node.repo
        data = request.manifest_data
        signed_document = manifestdoc.signed_document(
            manifest_id=data.manifest_id,
            manifest_version=data.manifest_version,
            session_id=request.session_id,
            owner_user_id=data.owner_user_id,
            merkle_root=request.merkle_root,
            total_checksum=data.total_checksum,
            generate_time=moment(data.create_time),
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
        body = pb.TransactionBody(
            type=pb.TRANSACTION_TYPE_SESSION_ANCHOR,
            session_anchor=anchors.payload_of(request),
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
        except LucidError:  # the ledger refused it: the anchoring is as it was
            if existing is not None:
                await repo.replace_anchoring(request.session_id, existing)
            else:
                await repo.delete_anchoring(request.session_id, doc["anchoring_id"])
            raise
        return doc

    async def verify(self, session_id: str, merkle_root: str, block_height: int) -> Verification:
        """Whether a session's root is anchored in a final block (at ``block_height``)."""
        ready = self.require()
        doc = await self.node.repo.anchoring(session_id)
        if doc is None:
            raise not_found(f"anchoring of session {session_id}")
        if doc["status"] != anchors.CONFIRMED:
            return Verification(doc)
        found = await ready.ledger.tx_index(doc["tx_hash"])
        if found is None:
            return Verification(doc)
        tx_doc, block = found
        canonical_body = tx_doc["canonical"].encode()
        body = transactions.body_from_encoding(canonical_body)
        index = int(tx_doc["transaction_index"])
        proof = blocks.inclusion_proof(block.tx_hashes, index)
        valid = canonical.sha256_hex(canonical_body) == doc["tx_hash"] and merkle.verify_inclusion(
            merkle.leaf_hash(bytes.fromhex(doc["tx_hash"])),
            index,
            proof.tree_size,
            [bytes.fromhex(node) for node in proof.audit_path],
            bytes.fromhex(block.header.merkle_root),
        )
        return Verification(
            doc,
            block=block,
            confirmations=ready.ledger.tip.height - block.header.height + 1,
            merkle_proof_valid=valid,
            verified=valid
            and body.session_anchor.session_id == session_id
            and body.session_anchor.merkle_root == merkle_root == doc["merkle_root"]
            and block_height in (0, block.header.height),
        )

    async def proof(self, session_id: str, caller: Principal) -> AnchorProof:
        """The proof of a session's anchor; INVALID_STATE before it is in a final block."""
        ready = self.require()
        doc = await self.anchoring(session_id, caller)
        found = (
            await ready.ledger.tx_index(doc["tx_hash"])
            if doc["status"] == anchors.CONFIRMED
            else None
        )
        if found is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"the anchor of session {session_id} is not in a final block yet ({doc['status']})",
            )
        tx_doc, block = found
        proof = blocks.inclusion_proof(block.tx_hashes, int(tx_doc["transaction_index"]))
        return AnchorProof(doc, tx_doc, proof, block)

    async def counts(self) -> tuple[dict[str, int], Doc | None]:
        """How many anchorings are in each state, and the oldest pending one."""
        self.require()
        repo = self.node.repo
        counts = {
            status: await repo.count_anchorings({"status": status}) for status in anchors.STATUS
        }
        return counts, await repo.oldest_anchoring(anchors.PENDING)

    async def page(
        self, statuses: Sequence[str], *, offset: int, limit: int
    ) -> tuple[list[Doc], int]:
        """A page of the anchorings in ``statuses`` (open ones by default), oldest first."""
        self.require()
        names = list(statuses) or [anchors.PENDING, anchors.PROCESSING]
        query = {"status": {"$in": names}}
        total = await self.node.repo.count_anchorings(query)
        docs = await self.node.repo.anchoring_docs(query, skip=offset, limit=limit)
        return docs, total
