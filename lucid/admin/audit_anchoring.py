"""The audit chain anchored on the chain, periodically, like a session root.

Every ``interval_s`` (when entries were added since the last time) the head of the
audit chain is anchored through the chain's ``AnchorSession``, as a session of admin's
own: a fresh pseudo-session id, the head's ``entry_hash`` as the Merkle root (it commits
to every entry before it), the entries since the last anchoring as the "chunks" (their
count, and the SHA-256 over their concatenated hashes as the total checksum), the
manifest document signed with admin's Ed25519 audit-anchoring key (sealed in
``admin_keys``). Once final, the chain proves the log held that head at that time: an
edited, deleted or reordered entry up to it no longer leads to the anchored hash.
Each anchoring is kept in ``admin_audit_anchors``."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid

import nacl.signing

from lucid.admin.clusters import call_cluster
from lucid.admin.store.audit_anchors import AuditAnchorRecord, AuditAnchorStore
from lucid.admin.store.auditchain import AuditChainStore
from lucid.blockchain.v1 import anchoring_pb2, anchoring_pb2_grpc, blockchain_pb2
from lucid.lib import manifestdoc
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.channels import Channels
from lucid.runtime.keystore import SealedKeyStore
from lucid.runtime.wire import timestamp

log = logging.getLogger("lucid.admin.audit_anchoring")

AUDIT_OWNER = str(uuid.uuid5(uuid.NAMESPACE_URL, "lucid:admin:audit-chain"))
"""The owner the anchorings are made for (no user: the audit chain itself)."""
KEY_PURPOSE = "audit_anchoring"
DEFAULT_INTERVAL_S = 3600.0
MANIFEST_VERSION = "1.0"


def _signing_key() -> tuple[bytes, str]:
    seed = secrets.token_bytes(32)
    return seed, nacl.signing.SigningKey(seed).verify_key.encode().hex()


class AuditAnchoring:
    """Anchors the audit chain's head."""

    def __init__(
        self,
        chain: AuditChainStore,
        anchors: AuditAnchorStore,
        keys: SealedKeyStore,
        channels: Channels,
        *,
        clock: Clock,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.chain = chain
        self.anchors = anchors
        self.keys = keys
        self._channels = channels
        self.clock = clock
        self.interval_s = interval_s

    async def anchor_once(self) -> AuditAnchorRecord | None:
        """Anchors the head if entries came since the last anchoring (None: nothing new)."""
        head = await self.chain.head()
        last = await self.anchors.last()
        if head is None or (last is not None and last.seq >= head.seq):
            return None
        after = last.seq if last is not None else -1
        hashes = await self.chain.hashes_between(after, head.seq)
        if not hashes:
            return None
        key = nacl.signing.SigningKey((await self.keys.current(KEY_PURPOSE, _signing_key)).secret)
        now = manifestdoc.truncate_ms(self.clock.now())
        anchor_id, manifest_id = new_id(), new_id()
        checksum = manifestdoc.total_checksum(hashes)
        document = manifestdoc.signed_document(
            manifest_id=manifest_id,
            manifest_version=MANIFEST_VERSION,
            session_id=anchor_id,
            owner_user_id=AUDIT_OWNER,
            merkle_root=head.entry_hash,
            total_checksum=checksum,
            generate_time=now,
        )
        request = anchoring_pb2.AnchorSessionRequest(
            session_id=anchor_id,
            manifest_data=anchoring_pb2.ManifestData(
                chunk_count=len(hashes),
                total_size_bytes=64 * len(hashes),
                create_time=timestamp(now),
                manifest_id=manifest_id,
                hash_algorithm=blockchain_pb2.HASH_ALGORITHM_SHA256,
                manifest_version=MANIFEST_VERSION,
                owner_user_id=AUDIT_OWNER,
                total_checksum=checksum,
            ),
            merkle_root=head.entry_hash,
            user_signature=key.sign(document).signature.hex(),
            signer_public_key=key.verify_key.encode().hex(),
        )
        stub = anchoring_pb2_grpc.AnchoringServiceStub
        reply = await call_cluster(self._channels, "blockchain", stub, "AnchorSession", request)
        record = AuditAnchorRecord(
            anchor_id=anchor_id,
            seq=head.seq,
            entry_hash=head.entry_hash,
            first_seq=after + 1,
            total_checksum=checksum,
            anchoring_id=reply.anchoring.anchoring_id,
            created_at=self.clock.now(),
        )
        await self.anchors.add(record)
        return record

    async def run(self) -> None:
        """Anchors every ``interval_s`` forever (a background task of the admin server)."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.anchor_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the audit chain could not be anchored; next time")
