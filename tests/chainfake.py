"""A stand-in for the chain's AnchoringService, for sessions tests that need
failures on demand (refusals, expiries) or run without the real chain.

It speaks the real contract over real gRPC with mTLS and makes real proof
material in the chain's canonical encodings (``lucid.lib.canonical``): the
session_anchor transaction and the block header are hashed with SHA-256 and signed
with Ed25519 by three validator keys, and the
transaction sits in an RFC 9162 tree with another transaction. It checks the
manifest signature with ``lucid.lib.manifestdoc``, as the chain must.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

import grpc
import nacl.signing
from pymongo.errors import OperationFailure

from lucid.blockchain.keys import ValidatorInfo, ValidatorSet
from lucid.blockchain.trust import trust_anchor
from lucid.blockchain.v1 import (
    anchoring_pb2,
    anchoring_pb2_grpc,
    blockchain_pb2,
    blockchain_pb2_grpc,
)
from lucid.common.v1 import proofs_pb2
from lucid.lib import canonical, manifestdoc, merkle
from lucid.lib.ids import new_id
from lucid.lib.trustanchor import TrustAnchor
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.server import ClusterApp, Runtime


@dataclass
class FakeAnchoring(anchoring_pb2_grpc.AnchoringServiceServicer):
    """AnchorSession / GetSessionAnchoring / GetAnchoringProof with scripted behaviour."""

    mode: str = "ok"
    """ok: confirm after ``confirm_after_s``; refuse: AnchorSession fails; expire: the
    anchoring expires; stall: stays pending."""
    confirm_after_s: float = 0.2
    busy_calls: int = 0
    """How many AnchorSession calls fail first as on a busy store."""
    final: bool = True
    """Whether a confirmed anchoring is in a final block (``make_final`` later)."""
    validators: list[nacl.signing.SigningKey] = field(
        default_factory=lambda: [nacl.signing.SigningKey.generate() for _ in range(3)]
    )
    records: dict[str, anchoring_pb2.SessionAnchoring] = field(default_factory=dict)
    proofs: dict[str, anchoring_pb2.GetAnchoringProofResponse] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    status_calls: dict[str, int] = field(default_factory=dict)
    height: int = 0
    height_calls: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def trust_anchor(self) -> TrustAnchor:
        """The trust anchor of this scripted chain (the genesis of its three keys)."""
        return trust_anchor(
            ValidatorSet(
                tuple(
                    ValidatorInfo(f"validator-{i}", bytes(key.verify_key).hex())
                    for i, key in enumerate(self.validators)
                )
            )
        )

    def make_final(self, session_id: str) -> None:
        """Marks a confirmed anchoring final (its block got its approvals)."""
        self.records[session_id].final = True
        self.proofs[session_id].anchoring.final = True
        self.proofs[session_id].block.final = True
        self.height += 1  # the approvals came with the next final block

    def confirm_stalled(self) -> int:
        """Confirms every stalled anchoring in one new final block (as a block of many
        anchors does); how many."""
        stalled = [
            session_id
            for session_id, record in self.records.items()
            if record.status == anchoring_pb2.ANCHORING_STATUS_PENDING
        ]
        self.height += 1
        for session_id in stalled:
            self._confirm(session_id, self.height)
        return len(stalled)

    async def AnchorSession(
        self, request: anchoring_pb2.AnchorSessionRequest, context: grpc.aio.ServicerContext
    ) -> anchoring_pb2.AnchorSessionResponse:
        self.calls.append(request.session_id)
        if self.busy_calls > 0:  # the chain's store is busy: a transient error
            self.busy_calls -= 1
            raise OperationFailure("database is locked (5) (SQLITE_BUSY)", code=1)
        if self.mode == "down":  # an outage: what the breaker counts
            raise LucidError(ErrorCode.ERROR_CODE_CHAIN_UNAVAILABLE, "the chain is down for a test")
        if self.mode == "refuse":  # a refusal, not an outage: the breaker stays closed
            raise LucidError(
                ErrorCode.ERROR_CODE_TRANSACTION_FAILED, "the chain refuses for a test"
            )
        existing = self.records.get(request.session_id)
        if existing is not None and self.mode != "reanchor":
            raise LucidError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, "already anchored")
        data = request.manifest_data
        document = manifestdoc.signed_document(
            manifest_id=data.manifest_id,
            manifest_version=data.manifest_version,
            session_id=request.session_id,
            owner_user_id=data.owner_user_id,
            merkle_root=request.merkle_root,
            total_checksum=data.total_checksum,
            generate_time=data.create_time.ToDatetime(),
        )
        try:
            nacl.signing.VerifyKey(bytes.fromhex(request.signer_public_key)).verify(
                document, bytes.fromhex(request.user_signature)
            )
        except Exception as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_SIGNATURE_INVALID, "the manifest signature does not verify"
            ) from exc
        record = anchoring_pb2.SessionAnchoring(
            anchoring_id=new_id(),
            session_id=request.session_id,
            status=anchoring_pb2.ANCHORING_STATUS_PENDING,
            merkle_root=request.merkle_root,
            manifest_data=request.manifest_data,
            user_signature=request.user_signature,
            signer_public_key=request.signer_public_key,
        )
        record.submit_time.GetCurrentTime()
        self.records[request.session_id] = record
        task = asyncio.create_task(self._settle(request.session_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return anchoring_pb2.AnchorSessionResponse(anchoring=record)

    async def _settle(self, session_id: str) -> None:
        await asyncio.sleep(self.confirm_after_s)
        record = self.records[session_id]
        if self.mode == "expire":
            record.status = anchoring_pb2.ANCHORING_STATUS_EXPIRED
            record.error_message = "expired for a test"
            return
        if self.mode == "stall":
            return
        self.height += 1
        self._confirm(session_id, self.height)

    def _confirm(self, session_id: str, height: int) -> None:
        record = self.records[session_id]
        proof = self._block(record, height)
        record.status = anchoring_pb2.ANCHORING_STATUS_CONFIRMED
        record.tx_hash = proof.transaction.tx_hash
        record.block_height = height
        record.block_hash = proof.block.hash
        record.final = self.final
        record.confirmations = 1
        record.confirm_time.GetCurrentTime()
        proof.anchoring.CopyFrom(record)
        self.proofs[session_id] = proof

    def _block(
        self, record: anchoring_pb2.SessionAnchoring, height: int
    ) -> anchoring_pb2.GetAnchoringProofResponse:
        payload = blockchain_pb2.SessionAnchorPayload(
            session_id=record.session_id,
            manifest_id=record.manifest_data.manifest_id,
            merkle_root=record.merkle_root,
            chunk_count=record.manifest_data.chunk_count,
        )
        tx_body = blockchain_pb2.TransactionBody(
            type=blockchain_pb2.TRANSACTION_TYPE_SESSION_ANCHOR, session_anchor=payload
        )
        tx_body.create_time.GetCurrentTime()
        body = canonical.encode_message(canonical.TX_TAG, tx_body)
        tx_hash = hashlib.sha256(body).digest()
        other = hashlib.sha256(b"another transaction %d" % height).digest()
        leaves = [merkle.leaf_hash(other), merkle.leaf_hash(tx_hash)]
        tree = merkle.MerkleTree(leaves)
        signer = self.validators[0]
        header = proofs_pb2.BlockHeader(
            version=1,
            height=height,
            previous_hash="0" * 64,
            merkle_root=tree.root.hex(),
            proposer_id="validator-0",
            slot=height,
            transaction_count=2,
        )
        header.block_time.GetCurrentTime()
        canonical_header = canonical.encode_header(
            canonical.HeaderFields(
                version=1,
                height=height,
                previous_hash=header.previous_hash,
                merkle_root=header.merkle_root,
                block_time_seconds=header.block_time.seconds,
                block_time_nanos=header.block_time.nanos,
                slot=height,
                transaction_count=2,
                proposer_id=header.proposer_id,
            )
        )
        block_hash = hashlib.sha256(canonical_header).digest()
        block = blockchain_pb2.Block(
            header=header,
            hash=block_hash.hex(),
            proposer_public_key=bytes(signer.verify_key).hex(),
            proposer_signature=signer.sign(
                canonical.proposal_message(block_hash.hex())
            ).signature.hex(),
            tx_hashes=[other.hex(), tx_hash.hex()],
            final=self.final,
            validator_count=len(self.validators),
            confirmations=1,
        )
        for i, key in enumerate(self.validators):
            block.approvals.add(
                validator_id=f"validator-{i}",
                public_key=bytes(key.verify_key).hex(),
                signature=key.sign(
                    canonical.approval_message(height, 0, block_hash.hex())
                ).signature.hex(),
                round=0,
            )
        transaction = blockchain_pb2.Transaction(
            tx_hash=tx_hash.hex(),
            signed=blockchain_pb2.SignedTransaction(
                signer_id="validator-0",
                public_key=bytes(signer.verify_key).hex(),
                signature=signer.sign(tx_hash).signature.hex(),
            ),
            block_height=height,
            block_hash=block_hash.hex(),
            transaction_index=1,
        )
        return anchoring_pb2.GetAnchoringProofResponse(
            transaction=transaction,
            canonical_transaction_body=body,
            transaction_proof=proofs_pb2.InclusionProof(
                leaf_index=1,
                tree_size=2,
                leaf_hash=leaves[1].hex(),
                audit_path=[p.hex() for p in tree.proof(1)],
                root_hash=tree.root.hex(),
            ),
            block=block,
            canonical_block_header=canonical_header,
        )

    async def GetSessionAnchoring(
        self, request: anchoring_pb2.GetSessionAnchoringRequest, context: grpc.aio.ServicerContext
    ) -> anchoring_pb2.GetSessionAnchoringResponse:
        record = self.records.get(request.session_id)
        if record is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no anchoring")
        self.status_calls[request.session_id] = self.status_calls.get(request.session_id, 0) + 1
        return anchoring_pb2.GetSessionAnchoringResponse(anchoring=record)

    async def GetAnchoringProof(
        self, request: anchoring_pb2.GetAnchoringProofRequest, context: grpc.aio.ServicerContext
    ) -> anchoring_pb2.GetAnchoringProofResponse:
        proof = self.proofs.get(request.session_id)
        if proof is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "not anchored in a final block")
        return proof


@dataclass
class FakeHeight(blockchain_pb2_grpc.BlockchainServiceServicer):
    """GetChainHeight of the scripted chain: the height of its last scripted block."""

    fake: FakeAnchoring

    async def GetChainHeight(
        self, request: blockchain_pb2.GetChainHeightRequest, context: grpc.aio.ServicerContext
    ) -> blockchain_pb2.GetChainHeightResponse:
        self.fake.height_calls += 1
        height = self.fake.height
        return blockchain_pb2.GetChainHeightResponse(height=height, final_height=height)


def fake_chain_builder(fake: FakeAnchoring):  # type: ignore[no-untyped-def]
    """A blockchain-cluster builder serving only ``fake`` (and its height)."""

    async def build(runtime: Runtime) -> ClusterApp:
        return ClusterApp(
            servicers=[
                (anchoring_pb2_grpc.add_AnchoringServiceServicer_to_server, fake),
                (blockchain_pb2_grpc.add_BlockchainServiceServicer_to_server, FakeHeight(fake)),
            ],
            requires_mongo=False,
        )

    return build
