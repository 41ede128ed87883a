"""The offline check of a chunk proof (``lucid.sessions.v1.ChunkProof``, as
``GetChunkProof`` returns it) against the chain's trust anchor: every link from the
chunk's blob to a block approved by two thirds of the anchor's validators, each named
when it fails. Pure (no I/O); ``lucid proof verify`` and the RDP replay use it.

The links: the blob hashes to the chunk's leaf entry; the entry's RFC 9162 inclusion
proof leads to the session root; the signed manifest states that root (Ed25519 by the
manifest's signer); the session_anchor transaction anchors that root for that session,
hashes to its hash, is signed by a validator of the anchor and is included in the
block's transaction root; the header hashes to the block hash; the proposer and the
approvers are members of the trust anchor with their keys, and approvals of one round
come from at least two thirds of its validators (``lucid.lib.trustanchor``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from lucid.common.v1 import proofs_pb2
from lucid.lib import canonical, merkle
from lucid.lib.trustanchor import Approval, Check, TrustAnchor, block_checks, signer_check
from lucid.lib.trustanchor import signature_ok as _signature_ok
from lucid.sessions.v1 import chunks_pb2


def _hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _proof_ok(proof: proofs_pb2.InclusionProof, entry_hex: str, root_hex: str) -> tuple[bool, str]:
    entry = _hex(entry_hex)
    if entry is None:
        return False, "the leaf entry is not hex"
    leaf = merkle.leaf_hash(entry)
    if proof.leaf_hash != leaf.hex():
        return False, f"leaf hash {proof.leaf_hash} is not SHA-256(0x00‖entry) = {leaf.hex()}"
    path = [_hex(p) for p in proof.audit_path]
    root = _hex(root_hex)
    if root is None or any(p is None for p in path):
        return False, "the proof holds something that is not hex"
    if proof.root_hash != root_hex:
        return False, f"the proof leads to {proof.root_hash}, not to {root_hex}"
    ok = merkle.verify_inclusion(
        leaf, int(proof.leaf_index), int(proof.tree_size), [p for p in path if p], root
    )
    return ok, "" if ok else "the audit path does not lead to the root"


def _transaction_fields(body: bytes) -> dict[str, str]:
    """The session id and root a canonical session_anchor transaction body carries."""
    data = canonical.decode_tagged(body, canonical.TX_TAG)
    payload = data.get("session_anchor") if isinstance(data, dict) else None
    if not isinstance(payload, dict):
        raise canonical.EncodingError("not a session_anchor transaction")
    return {
        "session_id": str(payload.get("session_id")),
        "merkle_root": str(payload.get("merkle_root")),
    }


def _header_encoding(header: proofs_pb2.BlockHeader) -> bytes:
    """The canonical encoding of a header as the proof states its fields."""
    return canonical.encode_header(
        canonical.HeaderFields(
            version=int(header.version),
            height=int(header.height),
            previous_hash=header.previous_hash,
            merkle_root=header.merkle_root,
            block_time_seconds=int(header.block_time.seconds),
            block_time_nanos=int(header.block_time.nanos),
            slot=int(header.slot),
            transaction_count=int(header.transaction_count),
            proposer_id=header.proposer_id,
        )
    )


def verify_chunk_proof(
    proof: chunks_pb2.ChunkProof,
    *,
    anchor: TrustAnchor,
    blob: bytes | None = None,
) -> list[Check]:
    """Checks every link of a chunk proof offline against the trust anchor; the result
    lists each check."""
    checks: list[Check] = []

    def add(name: str, ok: bool, detail: str = "") -> None:
        checks.append(Check(name, ok, detail))

    if blob is not None:
        digest = hashlib.sha256(blob).hexdigest()
        add("blob", digest == proof.merkle_hash, f"the blob hashes to {digest}")
    add(
        "leaf index",
        proof.chunk_proof.leaf_index == proof.sequence_number - 1,
        f"leaf {proof.chunk_proof.leaf_index} for sequence number {proof.sequence_number}",
    )
    ok, detail = _proof_ok(proof.chunk_proof, proof.merkle_hash, proof.merkle_root)
    add("chunk inclusion in the session root", ok, detail)

    checks += _manifest_checks(proof)

    if not proof.HasField("anchor") or not proof.anchor.tx_hash:
        add("anchor", False, "the session is not anchored in a block yet")
        return checks
    return checks + _anchor_checks(proof, anchor)


def _manifest_checks(proof: chunks_pb2.ChunkProof) -> list[Check]:
    checks: list[Check] = []

    def add(name: str, ok: bool, detail: str = "") -> None:
        checks.append(Check(name, ok, detail))

    manifest = proof.manifest
    try:
        document = json.loads(manifest.signed_document)
    except ValueError:
        document = {}
    expected = {
        "session_id": proof.session_id,
        "merkle_root": proof.merkle_root,
        "manifest_id": manifest.manifest_id,
        "total_checksum": manifest.total_checksum,
        "owner_user_id": manifest.owner_user_id,
    }
    wrong = [k for k, v in expected.items() if document.get(k) != v]
    add(
        "manifest document",
        bool(document) and not wrong,
        f"the signed document disagrees on {', '.join(wrong)}" if wrong else "",
    )
    add(
        "manifest signature",
        _signature_ok(manifest.signer_public_key, manifest.signed_document, manifest.signature),
        f"Ed25519 by {manifest.signer_public_key}",
    )

    return checks


def _anchor_checks(proof: chunks_pb2.ChunkProof, trust: TrustAnchor) -> list[Check]:
    checks: list[Check] = []

    def add(name: str, ok: bool, detail: str = "") -> None:
        checks.append(Check(name, ok, detail))

    anchor = proof.anchor
    body = anchor.canonical_transaction_body
    add(
        "transaction hash",
        hashlib.sha256(body).hexdigest() == anchor.tx_hash,
        "SHA-256 of the canonical transaction body",
    )
    try:
        fields = _transaction_fields(body)
    except ValueError as exc:
        add("transaction content", False, f"the body does not decode: {exc}")
    else:
        add(
            "transaction content",
            fields == {"session_id": proof.session_id, "merkle_root": proof.merkle_root},
            f"the transaction anchors {fields['merkle_root']} for session {fields['session_id']}",
        )
    tx_hash = _hex(anchor.tx_hash) or b""
    add(
        "transaction signature",
        _signature_ok(anchor.transaction_public_key, tx_hash, anchor.transaction_signature),
        f"Ed25519 by {anchor.transaction_public_key}",
    )
    checks.append(signer_check(trust, "transaction signer", anchor.transaction_public_key))
    ok, detail = _proof_ok(
        anchor.transaction_proof, anchor.tx_hash, anchor.block_header.merkle_root
    )
    add("transaction inclusion in the block", ok, detail)
    header_bytes = anchor.canonical_block_header
    add(
        "block hash",
        hashlib.sha256(header_bytes).hexdigest() == anchor.block_hash,
        "SHA-256 of the canonical block header",
    )
    try:
        encoded = _header_encoding(anchor.block_header)
    except ValueError as exc:
        add("block header content", False, f"the header does not encode: {exc}")
    else:
        add(
            "block header content",
            encoded == header_bytes,
            "the header fields (height, parent, transaction root, …) are the hashed ones",
        )
    block_hash = anchor.block_hash
    if len(block_hash) != 64 or _hex(block_hash) is None or block_hash != block_hash.lower():
        add("block signatures", False, "the block hash is not 64 lowercase hex digits")
        return checks
    return checks + block_checks(
        trust,
        height=int(anchor.block_header.height),
        block_hash=anchor.block_hash,
        proposer_id=anchor.block_header.proposer_id,
        proposer_public_key=anchor.proposer_public_key,
        proposer_signature=anchor.proposer_signature,
        approvals=[
            Approval(a.validator_id, a.public_key, a.signature, int(a.round))
            for a in anchor.approvals
        ],
        stated_validator_count=int(anchor.validator_count),
    )


def failed(checks: Sequence[Check]) -> list[Check]:
    """The checks that did not hold."""
    return [c for c in checks if not c.ok]
