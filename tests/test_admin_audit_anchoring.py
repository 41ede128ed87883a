"""The audit chain anchored on the real chain like a session root (issue 13): the head's
hash becomes a final anchoring that the chain verifies (and refuses for another root);
nothing new, no anchoring; the next anchoring covers only the entries since; an entry
edited afterwards no longer leads to the anchored head (and the edit is undone: the chain
is the test session's, which other tests verify whole)."""

from __future__ import annotations

from typing import Any

from lucid.admin.audit_anchoring import AUDIT_OWNER, AuditAnchoring
from lucid.admin.auditlog import AuditLog, NewEntry, entry_hash
from lucid.admin.schema import AUDIT_CHAIN, KEYS
from lucid.admin.store.audit_anchors import AuditAnchorStore
from lucid.admin.store.auditchain import AuditChainStore, AuditRecord
from lucid.admin.store.state import StateStore
from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.lib.clock import SystemClock
from lucid.lib.sealing import Sealer
from lucid.runtime.keystore import SealedKeyStore
from lucid.runtime.server import Runtime
from tests.chain_support import ChainStubs, wait_for
from tests.support import Mesh


async def test_the_audit_head_is_anchored_like_a_session_root(mesh: Mesh) -> None:
    await mesh.start("blockchain")
    async with mesh.channel("blockchain") as channel:
        await wait_for(ChainStubs(channel).ready, timeout_s=60)
    runtime = Runtime(mesh.settings, "admin")  # the admin service's identity and stores
    try:
        await _check(mesh, runtime)
    finally:
        await runtime.close()


async def _check(mesh: Mesh, runtime: Runtime) -> None:
    db, clock = runtime.datastores.db, SystemClock()
    chain = AuditChainStore(db)
    audit = AuditLog(chain, StateStore(db), clock)
    anchoring = AuditAnchoring(
        chain,
        AuditAnchorStore(db),
        SealedKeyStore(db[KEYS], Sealer(mesh.settings.sealing_passphrase()), clock),
        runtime.channels,
        clock=clock,
    )
    for n in range(3):
        await audit.record(NewEntry(action="update", resource="config", details={"n": n}))
    await anchoring.anchor_once()  # whatever came before this test
    await audit.record(NewEntry(action="update", resource="config", details={"n": 3}))
    head = await chain.head()
    assert head is not None
    first = await anchoring.anchor_once()
    assert first is not None
    assert (first.seq, first.entry_hash, first.first_seq) == (head.seq, head.entry_hash, head.seq)
    assert await anchoring.anchor_once() is None, "nothing new: nothing anchored"

    async with mesh.channel("blockchain", "sessions") as channel:
        stubs = ChainStubs(channel)

        async def final() -> apb.SessionAnchoring | None:
            reply = await stubs.anchoring.GetSessionAnchoring(
                apb.GetSessionAnchoringRequest(session_id=first.anchor_id)
            )
            return reply.anchoring if reply.anchoring.final else None

        anchored = await wait_for(final, timeout_s=30)
        assert anchored.merkle_root == head.entry_hash
        assert anchored.anchoring_id == first.anchoring_id
        assert anchored.manifest_data.owner_user_id == AUDIT_OWNER
        assert anchored.manifest_data.chunk_count == 1
        verified = await stubs.anchoring.VerifyAnchoring(
            apb.VerifyAnchoringRequest(session_id=first.anchor_id, merkle_root=head.entry_hash)
        )
        assert verified.verified and verified.block_height == anchored.block_height
        other = await stubs.anchoring.VerifyAnchoring(
            apb.VerifyAnchoringRequest(session_id=first.anchor_id, merkle_root="0" * 64)
        )
        assert not other.verified

    for n in (4, 5):
        await audit.record(NewEntry(action="update", resource="config", details={"n": n}))
    second = await anchoring.anchor_once()
    assert second is not None
    assert (second.first_seq, second.seq) == (first.seq + 1, first.seq + 2)

    # An entry edited after the anchoring no longer hashes to what the chain holds. The
    # chain is the session's (the admin server's tests verify all of it): put it back.
    collection: Any = db[AUDIT_CHAIN]
    original = await collection.find_one({"seq": head.seq})
    await collection.update_one({"seq": head.seq}, {"$set": {"details.n": 99}})
    try:
        edited = AuditRecord.of(await collection.find_one({"seq": head.seq}))
        assert entry_hash(edited) != anchored.merkle_root
        broken = await audit.verify()
        assert not broken.valid and broken.first_invalid_entry_id == head.entry_id
    finally:
        await collection.replace_one({"_id": original["_id"]}, original)
    assert entry_hash(AuditRecord.of(original)) == anchored.merkle_root
    assert (await audit.verify()).valid
