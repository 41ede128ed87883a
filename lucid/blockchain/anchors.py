"""Session anchorings: a view derived from the chain and the pending pool.

An anchoring is the life of a session's ``session_anchor`` transaction (spec 02 §3):
pending (in the pool) → processing (in a block this validator voted for) →
confirmed (in a final block), or pending → expired (no final block within the
anchoring timeout; its transaction leaves the pool, and the session may be anchored
again). Every validator derives its own anchorings from the transactions it
learns (submitted, relayed or in a final block), so they agree wherever their
chains do; the anchoring id is the transaction's nonce. The chain is the truth: an
anchor in a final block confirms the anchoring whatever the view held before.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from lucid.blockchain.store.chain import Doc, Repository, utc
from lucid.blockchain.transactions import CheckedTransaction
from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.lib.ids import is_uuid4
from lucid.lib.manifestdoc import truncate_ms
from lucid.runtime.wire import optional_timestamp

PENDING = "pending"
PROCESSING = "processing"
CONFIRMED = "confirmed"
FAILED = "failed"
EXPIRED = "expired"
OPEN = (PENDING, PROCESSING, CONFIRMED)
"""States in which a session counts as anchored or on its way (a second anchor is refused)."""
REPLACEABLE = (FAILED, EXPIRED)

STATUS = {
    PENDING: apb.ANCHORING_STATUS_PENDING,
    PROCESSING: apb.ANCHORING_STATUS_PROCESSING,
    CONFIRMED: apb.ANCHORING_STATUS_CONFIRMED,
    FAILED: apb.ANCHORING_STATUS_FAILED,
    EXPIRED: apb.ANCHORING_STATUS_EXPIRED,
}
STATUS_NAMES = {number: name for name, number in STATUS.items()}


def payload_of(request: apb.AnchorSessionRequest) -> pb.SessionAnchorPayload:
    """The session-anchor payload of an AnchorSession request (the manifest's signed
    document can be rebuilt from it alone)."""
    data = request.manifest_data
    payload = pb.SessionAnchorPayload(
        session_id=request.session_id,
        manifest_id=data.manifest_id,
        merkle_root=request.merkle_root,
        chunk_count=data.chunk_count,
        total_size_bytes=data.total_size_bytes,
        hash_algorithm=data.hash_algorithm,
        owner_user_id=data.owner_user_id,
        manifest_signature=request.user_signature,
        manifest_signer_public_key=request.signer_public_key,
        total_checksum=data.total_checksum,
        manifest_version=data.manifest_version,
    )
    payload.generate_time.FromDatetime(truncate_ms(data.create_time.ToDatetime(tzinfo=UTC)))
    return payload


def doc_from_tx(checked: CheckedTransaction, *, now: datetime, timeout_s: float) -> Doc:
    """The pending anchoring of an anchor transaction."""
    body = checked.signed.body
    payload = body.session_anchor
    anchoring_id = body.nonce if is_uuid4(body.nonce) else checked.tx_hash[:32]
    return {
        "session_id": payload.session_id,
        "anchoring_id": anchoring_id,
        "status": PENDING,
        "merkle_root": payload.merkle_root,
        "manifest": {
            "manifest_id": payload.manifest_id,
            "chunk_count": payload.chunk_count,
            "total_size_bytes": payload.total_size_bytes,
            "create_time": payload.generate_time.ToDatetime(tzinfo=UTC),
            "hash_algorithm": int(payload.hash_algorithm),
            "manifest_version": payload.manifest_version,
            "owner_user_id": payload.owner_user_id,
            "total_checksum": payload.total_checksum,
        },
        "owner_user_id": payload.owner_user_id,
        "user_signature": payload.manifest_signature,
        "signer_public_key": payload.manifest_signer_public_key,
        "tx_hash": checked.tx_hash,
        "block_height": None,
        "block_hash": None,
        "submit_time": now,
        "confirm_time": None,
        "expire_time": now + timedelta(seconds=timeout_s),
        "error_message": "",
    }


async def on_pending_tx(
    repo: Repository, checked: CheckedTransaction, *, now: datetime, timeout_s: float
) -> None:
    """Records the anchoring of an anchor transaction that entered the pool."""
    doc = doc_from_tx(checked, now=now, timeout_s=timeout_s)
    existing = await repo.anchoring(doc["session_id"])
    if existing is None:
        try:
            await repo.insert_anchoring(doc)
        except DuplicateKeyError:
            return
    elif existing["status"] in REPLACEABLE and existing["tx_hash"] != checked.tx_hash:
        await repo.replace_anchoring(doc["session_id"], doc, REPLACEABLE)


async def on_final_block(
    repo: Repository,
    anchors: list[CheckedTransaction],
    *,
    block_height: int,
    block_hash: str,
    now: datetime,
    timeout_s: float,
) -> None:
    """Confirms the anchorings of a final block's anchors; the others go back to pending.
    The anchorings are read and the usual case (the anchoring already on the block's
    transaction) written a few at once, not one after another: a block of many anchors
    costs a few round-trip times, not three per anchor."""
    known = await repo.anchorings_of(c.session_id for c in anchors)
    ours: list[tuple[str, Doc]] = []
    for checked in anchors:
        session_id = checked.session_id
        confirmed = {
            "status": CONFIRMED,
            "tx_hash": checked.tx_hash,
            "block_height": block_height,
            "block_hash": block_hash,
            "confirm_time": now,
            "error_message": "",
        }
        existing = known.get(session_id)
        if existing is not None and existing["tx_hash"] == checked.tx_hash:
            ours.append((session_id, confirmed))
            continue
        doc = {**doc_from_tx(checked, now=now, timeout_s=timeout_s), **confirmed}
        if existing is None:
            try:
                await repo.insert_anchoring(doc)
                continue
            except DuplicateKeyError:
                pass
        await repo.replace_anchoring(session_id, doc)
    await repo.update_anchorings_by_id(ours)
    included = [c.tx_hash for c in anchors]
    await repo.update_anchorings(
        {"status": PROCESSING, "tx_hash": {"$nin": included}}, {"status": PENDING}
    )


async def mark_processing(repo: Repository, tx_hashes: list[str]) -> None:
    """Anchorings whose transaction is in a block this validator voted for."""
    if tx_hashes:
        await repo.update_anchorings(
            {"status": PENDING, "tx_hash": {"$in": tx_hashes}}, {"status": PROCESSING}
        )


async def expire_due(repo: Repository, now: datetime) -> list[Doc]:
    """Expires the pending anchorings past their time; their transactions leave the pool."""
    expired = []
    for doc in await repo.anchoring_docs(
        {"status": PENDING, "expire_time": {"$lte": now}}, skip=0, limit=1000
    ):
        changed = await repo.update_anchoring(
            doc["session_id"],
            {"status": EXPIRED, "error_message": "no final block within the anchoring timeout"},
            status=PENDING,
        )
        if changed is not None:
            await repo.drop_tx(doc["tx_hash"], "the anchoring expired")
            expired.append(changed)
    return expired


def to_proto(
    doc: Doc, *, tip_height: int, interval_s: float = 0.0, leader_timeout_s: float = 0.0
) -> apb.SessionAnchoring:
    """An anchoring as the contract shows it."""
    manifest: dict[str, Any] = doc.get("manifest") or {}
    status = doc.get("status", PENDING)
    result = apb.SessionAnchoring(
        anchoring_id=doc["anchoring_id"],
        session_id=doc["session_id"],
        status=STATUS.get(status, apb.ANCHORING_STATUS_UNSPECIFIED),
        merkle_root=doc["merkle_root"],
        manifest_data=apb.ManifestData(
            chunk_count=int(manifest.get("chunk_count", 0)),
            total_size_bytes=int(manifest.get("total_size_bytes", 0)),
            create_time=optional_timestamp(manifest.get("create_time")),
            manifest_id=manifest.get("manifest_id", ""),
            hash_algorithm=int(manifest.get("hash_algorithm", 0)),  # type: ignore[arg-type]
            manifest_version=manifest.get("manifest_version", ""),
            owner_user_id=manifest.get("owner_user_id", ""),
            total_checksum=manifest.get("total_checksum", ""),
        ),
        user_signature=doc.get("user_signature", ""),
        signer_public_key=doc.get("signer_public_key", ""),
        tx_hash=doc.get("tx_hash", ""),
        error_message=doc.get("error_message") or "",
    )
    if status == CONFIRMED and doc.get("block_height") is not None:
        result.block_height = int(doc["block_height"])
        result.block_hash = doc["block_hash"]
        result.confirmations = tip_height - result.block_height + 1
        result.final = True
    for name, key in (
        ("submit_time", "submit_time"),
        ("confirm_time", "confirm_time"),
        ("expire_time", "expire_time"),
    ):
        value = optional_timestamp(doc.get(key))
        if value is not None and not (name == "expire_time" and status == CONFIRMED):
            getattr(result, name).CopyFrom(value)
    if status in (PENDING, PROCESSING):
        submitted = utc(doc.get("submit_time")) or datetime.now(UTC)
        estimate = submitted + timedelta(seconds=interval_s + leader_timeout_s)
        result.estimated_confirm_time.FromDatetime(estimate)
    return result
