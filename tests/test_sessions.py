"""The sessions cluster over real gRPC with mTLS, FerretDB, Redis and a blob volume:
the state machine, uploads, downloads, finalization and anchoring (against a
scripted chain), proofs, ownership, trust policies, statistics (spec 03 §7)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import nacl.signing
import pytest
from google.protobuf import json_format

from lucid.blockchain.v1 import anchoring_pb2
from lucid.common.v1 import access_pb2
from lucid.lib import canonical, merkle
from lucid.lib.chunkproof import failed, verify_chunk_proof
from lucid.runtime.breaker import BreakerPolicy
from lucid.runtime.config import Settings
from lucid.sessions.blobformat import MAX_CHUNK_BYTES
from lucid.sessions.v1 import chunks_pb2, manifests_pb2, sessions_pb2, trust_pb2
from lucid.supervisor.localservers import free_port
from tests.chain_cluster import ValidatorCluster
from tests.chain_support import wait_for
from tests.chainfake import FakeAnchoring
from tests.sessionkit import SessionsEnv, start_env
from tests.support import Mesh, details
from tests.waiting import eventually

S = sessions_pb2
MiB = 1024 * 1024


@pytest.fixture(scope="module")
async def env(mesh: Mesh, settings: Settings) -> AsyncIterator[SessionsEnv]:
    environment = await start_env(mesh, settings)
    try:
        yield environment
    finally:
        await environment.channel.close()
        await environment.mesh.stop_all()


@pytest.fixture(scope="module", params=["scripted-chain", "three-validators"])
async def any_chain(
    request: pytest.FixtureRequest, mesh: Mesh, settings: Settings, tmp_path_factory: Any
) -> AsyncIterator[SessionsEnv]:
    """The life-cycle tests run against the scripted chain and against three real
    validator processes (``python -m lucid serve blockchain --validator N``)."""
    # Its own database: a second sessions server on the module's database would finalize
    # (and anchor on its own chain) sessions the ``env`` tests stop.
    settings = settings.replace(mongodb_db=f"{settings.mongodb_db}_{uuid.uuid4().hex[:6]}")
    validators: ValidatorCluster | None = None
    environment: SessionsEnv | None = None
    try:
        if request.param == "scripted-chain":
            environment = await start_env(mesh, settings)
        else:
            validators = ValidatorCluster(settings, tmp_path_factory.mktemp("chain"), count=3)
            validators.start_all()
            for index in range(3):
                async with validators.stubs(index) as stubs:
                    await wait_for(stubs.ready, timeout_s=90)
            environment = await start_env(mesh, settings, chain_port=validators.ports[0])
        yield environment
    finally:
        if environment is not None:
            await environment.channel.close()
            await environment.mesh.stop_all()
        if validators is not None:
            validators.stop_all()


def blob_files(env: SessionsEnv) -> list[Path]:
    root = env.config.blob_root
    return [p for p in root.rglob("*") if p.is_file() and "tmp" not in p.parts]


async def expect_error(call: object, code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value
    assert details(caught.value).reason == reason, details(caught.value)


async def test_create_start_three_chunks_stop_reaches_completed(any_chain: SessionsEnv) -> None:
    """§7.1: create → start → 3 chunks → stop → completed, manifest of 3, anchor confirmed."""
    env = any_chain
    md = await env.token()
    session = await env.create(md, name="three chunks")
    assert session.state == S.SESSION_STATE_CREATED
    started = await env.sessions.StartRecording(
        S.StartRecordingRequest(session_id=session.session_id), metadata=md
    )
    assert started.session.state == S.SESSION_STATE_RECORDING
    assert started.recording_url
    parts = [os.urandom(1000) + bytes(5000 * i) for i in range(1, 4)]
    for seq, data in enumerate(parts, start=1):
        chunk = await env.upload(md, session.session_id, seq, data)
        assert chunk.state == chunks_pb2.CHUNK_STATE_STORED
        assert chunk.checksum == hashlib.sha256(data).hexdigest()
    stopped = await env.sessions.StopRecording(
        S.StopRecordingRequest(session_id=session.session_id), metadata=md
    )
    assert stopped.final_statistics.chunk_count == 3
    done = await env.wait_state(md, session.session_id, {S.SESSION_STATE_COMPLETED})
    manifest = (
        await env.manifests.GetManifest(
            manifests_pb2.GetManifestRequest(session_id=session.session_id), metadata=md
        )
    ).manifest
    assert manifest.chunk_count == 3
    leaves = [merkle.leaf_hash(bytes.fromhex(c.merkle_hash)) for c in manifest.chunks]
    assert manifest.merkle_root == merkle.root(leaves).hex() == done.merkle_root
    on_chain = await env.chain_anchoring(session.session_id)
    assert on_chain.merkle_root == manifest.merkle_root and on_chain.final
    assert on_chain.block_height == done.anchoring.block_height
    assert on_chain.block_hash == done.anchoring.block_hash
    assert done.anchoring.status == S.ANCHORING_STATUS_CONFIRMED
    assert done.anchoring.final and done.anchoring.block_height > 0
    assert manifest.blockchain_anchored


async def test_chunk_over_10_mib_is_refused_with_nothing_stored(env: SessionsEnv) -> None:
    """§7.2."""
    md = await env.token()
    session_id = await env.recording(md)
    before = len(blob_files(env))
    await expect_error(
        env.upload(md, session_id, 1, bytes(MAX_CHUNK_BYTES + 1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LUCID_ERR_1001",
    )
    listed = await env.chunks.ListChunks(
        chunks_pb2.ListChunksRequest(session_id=session_id), metadata=md
    )
    assert listed.total_size == 0
    assert len(blob_files(env)) == before
    exact = await env.upload(md, session_id, 1, bytes(MAX_CHUNK_BYTES))
    assert exact.size_bytes == MAX_CHUNK_BYTES


async def test_resend_is_idempotent_conflict_and_gap_are_refused(env: SessionsEnv) -> None:
    """§7.3 and the upload rules: same bytes again → the stored chunk; other bytes → refused;
    a gap → refused; nothing stored by a refusal."""
    md = await env.token()
    session_id = await env.recording(md)
    first = await env.upload(md, session_id, 1, b"first chunk")
    again = await env.upload(md, session_id, 1, b"first chunk")
    assert again.chunk_id == first.chunk_id and again.merkle_hash == first.merkle_hash
    stored = len(blob_files(env))
    await expect_error(
        env.upload(md, session_id, 1, b"other bytes"),
        grpc.StatusCode.ALREADY_EXISTS,
        "LUCID_ERR_4201",
    )
    await expect_error(
        env.upload(md, session_id, 3, b"skips two"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LUCID_ERR_4202",
    )
    assert len(blob_files(env)) == stored
    status = await env.chunks.GetUploadStatus(
        chunks_pb2.GetUploadStatusRequest(session_id=session_id), metadata=md
    )
    assert status.last_durable_sequence == 1
    assert status.durable_bytes == len(b"first chunk")


async def test_resend_of_an_earlier_chunk_and_a_checked_checksum(env: SessionsEnv) -> None:
    """A re-send below the last chunk is answered from its own row (same bytes) or refused
    (other bytes); a checksum that matches is kept as the chunk's, one that does not is
    refused with nothing stored."""
    md = await env.token()
    session_id = await env.recording(md)
    first = await env.upload(md, session_id, 1, b"one")
    await env.upload(md, session_id, 2, b"two")
    again = await env.chunks.UploadChunk(
        chunks_pb2.UploadChunkRequest(session_id=session_id, sequence_number=1, data=b"one"),
        metadata=md,
    )
    assert again.chunk.chunk_id == first.chunk_id and again.last_durable_sequence == 2
    await expect_error(
        env.upload(md, session_id, 1, b"uno"),
        grpc.StatusCode.ALREADY_EXISTS,
        "LUCID_ERR_4201",
    )
    stored = len(blob_files(env))
    await expect_error(
        env.chunks.UploadChunk(
            chunks_pb2.UploadChunkRequest(
                session_id=session_id,
                sequence_number=3,
                data=b"three",
                checksum=hashlib.sha256(b"other").hexdigest(),
            ),
            metadata=md,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LUCID_ERR_1001",
    )
    assert len(blob_files(env)) == stored
    third = await env.chunks.UploadChunk(
        chunks_pb2.UploadChunkRequest(
            session_id=session_id,
            sequence_number=3,
            data=b"three",
            checksum=hashlib.sha256(b"three").hexdigest(),
        ),
        metadata=md,
    )
    assert third.chunk.checksum == hashlib.sha256(b"three").hexdigest()
    assert third.last_durable_sequence == 3


async def test_session_over_its_max_size_is_refused(env: SessionsEnv) -> None:
    md = await env.token()
    session_id = await env.recording(md, storage_config=S.StorageConfig(max_size_bytes=MiB))
    await env.upload(md, session_id, 1, bytes(MiB - 10))
    await expect_error(
        env.upload(md, session_id, 2, bytes(11)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LUCID_ERR_4005",
    )
    await env.upload(md, session_id, 2, bytes(10))


async def test_illegal_transitions_are_failed_precondition(env: SessionsEnv) -> None:
    """§7.6 and the whole machine: every move the state does not allow answers 4007."""
    md = await env.token()
    created = (await env.create(md)).session_id

    def req(cls: type, sid: str) -> object:
        return cls(session_id=sid)

    bad = grpc.StatusCode.FAILED_PRECONDITION
    for call in (
        env.sessions.StopRecording(req(S.StopRecordingRequest, created), metadata=md),
        env.sessions.PauseRecording(req(S.PauseRecordingRequest, created), metadata=md),
        env.sessions.ResumeRecording(req(S.ResumeRecordingRequest, created), metadata=md),
        env.upload(md, created, 1, b"x"),
    ):
        await expect_error(call, bad, "LUCID_ERR_4007")
    await env.sessions.StartRecording(S.StartRecordingRequest(session_id=created), metadata=md)
    for call in (
        env.sessions.StartRecording(req(S.StartRecordingRequest, created), metadata=md),
        env.sessions.ResumeRecording(req(S.ResumeRecordingRequest, created), metadata=md),
        env.sessions.DeleteSession(req(S.DeleteSessionRequest, created), metadata=md),
    ):
        await expect_error(call, bad, "LUCID_ERR_4007")
    paused = await env.sessions.PauseRecording(
        S.PauseRecordingRequest(session_id=created), metadata=md
    )
    assert paused.session.state == S.SESSION_STATE_PAUSED
    await expect_error(
        env.sessions.PauseRecording(req(S.PauseRecordingRequest, created), metadata=md),
        bad,
        "LUCID_ERR_4007",
    )
    resumed = await env.sessions.ResumeRecording(
        S.ResumeRecordingRequest(session_id=created), metadata=md
    )
    assert resumed.session.state == S.SESSION_STATE_RECORDING
    await env.upload(md, created, 1, b"one chunk")
    await env.sessions.StopRecording(S.StopRecordingRequest(session_id=created), metadata=md)
    for call in (
        env.sessions.StartRecording(req(S.StartRecordingRequest, created), metadata=md),
        env.sessions.StopRecording(req(S.StopRecordingRequest, created), metadata=md),
        env.sessions.PauseRecording(req(S.PauseRecordingRequest, created), metadata=md),
        env.upload(md, created, 2, b"late"),
    ):
        await expect_error(call, bad, "LUCID_ERR_4007")
    await env.wait_state(md, created, {S.SESSION_STATE_COMPLETED})
    await expect_error(
        env.sessions.StartRecording(req(S.StartRecordingRequest, created), metadata=md),
        bad,
        "LUCID_ERR_4007",
    )


async def test_eleventh_create_in_a_minute_is_rate_limited(env: SessionsEnv) -> None:
    """§7.7 (a fixed 60 s window: a try that straddles two windows is made again)."""
    import time

    for _ in range(3):
        md = await env.token()
        window = int(time.time() // 60)
        for _ in range(env.config.create_per_minute):
            await env.create(md)
        try:
            await env.create(md)
        except grpc.aio.AioRpcError as exc:
            refused = exc
            break
        assert int(time.time() // 60) != window, "the 11th create in one window was accepted"
    else:
        raise AssertionError("every try straddled two windows")
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = details(refused)
    assert info.reason == "LUCID_ERR_3001"
    assert info.retry_after_s is not None and info.retry_after_s > 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rdp_config": S.RdpConfig(host="localhost", port=99999)}, "rdp_config.port"),
        (
            {"recording_config": S.RecordingConfig(resolution="invalid")},
            "recording_config.resolution",
        ),
        ({"metadata": S.SessionMetadata(tags=[f"t{i}" for i in range(11)])}, "metadata.tags"),
        ({"rdp_config": S.RdpConfig(host="a@b")}, "rdp_config.host"),
        ({"name": ""}, "name"),
    ],
)
async def test_bad_session_fields_are_invalid_argument(
    env: SessionsEnv, fields: dict[str, object], field: str
) -> None:
    """§7.8."""
    md = await env.token()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.sessions.CreateSession(
            S.CreateSessionRequest(**{"name": "n", **fields}), metadata=md
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = details(caught.value)
    assert info.reason == "LUCID_ERR_1001"
    assert any(v.field == field for v in info.field_violations), info.field_violations


async def test_unreachable_rdp_host_is_refused(env: SessionsEnv) -> None:
    md = await env.token()
    from lucid.supervisor.localservers import free_port

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.create(md, rdp_config=S.RdpConfig(host="127.0.0.1", port=free_port()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(caught.value).reason == "LUCID_ERR_4206"


async def test_password_is_never_stored_or_returned(env: SessionsEnv) -> None:
    """§7.12: the RDP password is used to connect and then forgotten."""

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    secret = "hunter2-very-secret"
    md = await env.token()
    try:
        session = await env.create(
            md,
            rdp_config=S.RdpConfig(host="127.0.0.1", port=port, username="bob", password=secret),
        )
    finally:
        server.close()
        await server.wait_closed()
    assert session.rdp_config.host == "127.0.0.1" and session.rdp_config.username == "bob"
    assert session.rdp_config.password == ""
    fetched = await env.get(md, session.session_id)
    assert secret not in str(fetched) and fetched.rdp_config.password == ""
    db = env.mesh.servers["sessions"].runtime.datastores.db
    doc = await db["sessions"].find_one({"_id": session.session_id})
    assert doc is not None and secret not in repr(doc)


async def test_role_below_the_permission_is_denied(env: SessionsEnv) -> None:
    """§7.9 with the roles of DECISIONS: a user may record but not anchor by hand."""
    md = await env.token()
    session_id = await env.recording(md)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.sessions.RetryAnchoring(
            S.RetryAnchoringRequest(session_id=session_id), metadata=md
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(caught.value).reason == "LUCID_ERR_2004"


async def test_users_see_only_their_own_sessions_admins_see_all(env: SessionsEnv) -> None:
    """§7.10."""
    alice, bob = await env.token(), await env.token()
    admin = await env.token(role=access_pb2.ROLE_ADMIN)
    session = await env.create(alice, name="alice's")
    await expect_error(
        env.get(bob, session.session_id), grpc.StatusCode.NOT_FOUND, "LUCID_ERR_4001"
    )
    await expect_error(
        env.upload(bob, session.session_id, 1, b"x"), grpc.StatusCode.NOT_FOUND, "LUCID_ERR_4001"
    )
    await expect_error(
        env.sessions.DeleteSession(
            S.DeleteSessionRequest(session_id=session.session_id), metadata=bob
        ),
        grpc.StatusCode.NOT_FOUND,
        "LUCID_ERR_4001",
    )
    assert (await env.get(admin, session.session_id)).name == "alice's"
    bobs = await env.sessions.ListSessions(S.ListSessionsRequest(), metadata=bob)
    assert session.session_id not in {s.session_id for s in bobs.sessions}
    alices = await env.sessions.ListSessions(S.ListSessionsRequest(), metadata=alice)
    assert [s.session_id for s in alices.sessions] == [session.session_id]
    everyone = await env.sessions.ListSessions(
        S.ListSessionsRequest(owner_user_id=session.owner_user_id), metadata=admin
    )
    assert [s.session_id for s in everyone.sessions] == [session.session_id]
    await expect_error(
        env.sessions.ListSessions(
            S.ListSessionsRequest(owner_user_id=session.owner_user_id), metadata=bob
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "LUCID_ERR_2004",
    )


async def test_update_and_list_with_filters_and_pages(env: SessionsEnv) -> None:
    md = await env.token()
    ids = [
        (
            await env.create(md, name=f"s{i}", metadata=S.SessionMetadata(project="p", tags=["x"]))
        ).session_id
        for i in range(3)
    ]
    updated = await env.sessions.UpdateSession(
        S.UpdateSessionRequest(session_id=ids[0], name="renamed", description="d"), metadata=md
    )
    assert updated.session.name == "renamed" and updated.session.description == "d"
    first = await env.sessions.ListSessions(
        S.ListSessionsRequest(project="p", page_size=2, order=S.SESSION_ORDER_CREATE_TIME_ASC),
        metadata=md,
    )
    assert first.total_size == 3 and len(first.sessions) == 2 and first.next_page_token
    second = await env.sessions.ListSessions(
        S.ListSessionsRequest(
            project="p",
            page_size=2,
            order=S.SESSION_ORDER_CREATE_TIME_ASC,
            page_token=first.next_page_token,
        ),
        metadata=md,
    )
    assert [s.session_id for s in [*first.sessions, *second.sessions]] == ids
    assert not second.next_page_token
    await env.sessions.StartRecording(S.StartRecordingRequest(session_id=ids[1]), metadata=md)
    await expect_error(
        env.sessions.UpdateSession(
            S.UpdateSessionRequest(
                session_id=ids[1], recording_config=S.RecordingConfig(frame_rate=10)
            ),
            metadata=md,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LUCID_ERR_4007",
    )


async def test_delete_removes_chunks_blobs_and_pipeline(env: SessionsEnv) -> None:
    """§7.11."""
    md = await env.token()
    session_id = await env.recording(md)
    chunk = await env.upload(md, session_id, 1, os.urandom(2000))
    path = env.config.blob_root / chunk.merkle_hash[:2] / chunk.merkle_hash[2:4] / chunk.merkle_hash
    assert path.is_file()
    await env.sessions.StopRecording(S.StopRecordingRequest(session_id=session_id), metadata=md)
    await env.wait_state(md, session_id, {S.SESSION_STATE_COMPLETED})
    await env.sessions.DeleteSession(S.DeleteSessionRequest(session_id=session_id), metadata=md)
    assert not path.exists()
    assert (await env.get(md, session_id)).state == S.SESSION_STATE_DELETED
    listed = await env.chunks.ListChunks(
        chunks_pb2.ListChunksRequest(session_id=session_id), metadata=md
    )
    assert listed.total_size == 0
    await expect_error(
        env.sessions.GetPipeline(S.GetPipelineRequest(session_id=session_id), metadata=md),
        grpc.StatusCode.NOT_FOUND,
        "LUCID_ERR_4001",
    )
    await expect_error(
        env.manifests.GetManifest(
            manifests_pb2.GetManifestRequest(session_id=session_id), metadata=md
        ),
        grpc.StatusCode.NOT_FOUND,
        "LUCID_ERR_4001",
    )


async def _download(
    env: SessionsEnv, md: object, session_id: str, chunk_id: str, **kw: bool
) -> bytes:
    pieces = []
    async for piece in env.chunks.DownloadChunk(
        chunks_pb2.DownloadChunkRequest(session_id=session_id, chunk_id=chunk_id, **kw),
        metadata=md,
    ):
        pieces.append(piece)
    data = b"".join(p.data for p in pieces)
    assert pieces[0].total_size_bytes == len(data)
    assert pieces[0].sha256 == hashlib.sha256(data).hexdigest()
    return data


async def test_download_returns_the_bytes_and_refuses_an_altered_blob(env: SessionsEnv) -> None:
    md = await env.token()
    session_id = await env.recording(md)
    data = os.urandom(3 * MiB) + bytes(MiB)
    chunk = await env.upload(md, session_id, 1, data)
    assert await _download(env, md, session_id, chunk.chunk_id) == data
    blob = await _download(env, md, session_id, chunk.chunk_id, encrypted=True)
    assert hashlib.sha256(blob).hexdigest() == chunk.merkle_hash
    path = env.config.blob_root / chunk.merkle_hash[:2] / chunk.merkle_hash[2:4] / chunk.merkle_hash
    altered = bytearray(path.read_bytes())
    altered[len(altered) // 2] ^= 0x01
    path.write_bytes(bytes(altered))
    for encrypted in (False, True):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _download(env, md, session_id, chunk.chunk_id, encrypted=encrypted)
        assert caught.value.code() == grpc.StatusCode.DATA_LOSS
        assert details(caught.value).reason == "LUCID_ERR_5012"
    events = await env.sessions.ListSessionEvents(
        S.ListSessionEventsRequest(session_id=session_id, event_type="chunk.download"),
        metadata=md,
    )
    assert [e.success for e in events.events][:2] == [False, False]


async def _stream(env: SessionsEnv, md: object, session_id: str, pieces: list[bytes], **kw: object):  # type: ignore[no-untyped-def]
    async def requests():  # type: ignore[no-untyped-def]
        for i, piece in enumerate(pieces):
            yield chunks_pb2.UploadChunksRequest(
                session_id=session_id if i == 0 else "", data=piece, frame_count=1, **kw
            )

    return await env.chunks.UploadChunks(requests(), metadata=md)


async def test_stream_is_cut_at_exactly_10_mib_and_resumes(env: SessionsEnv) -> None:
    md = await env.token()
    session_id = await env.recording(md)
    data = os.urandom(MiB) * 23  # 23 MiB in frames of odd sizes
    frames = [data[i : i + 3_000_017] for i in range(0, len(data), 3_000_017)]
    reply = await _stream(env, md, session_id, frames)
    assert reply.last_durable_sequence == 3 and reply.durable_bytes == len(data)
    listed = await env.chunks.ListChunks(
        chunks_pb2.ListChunksRequest(session_id=session_id), metadata=md
    )
    assert [c.size_bytes for c in listed.chunks] == [MAX_CHUNK_BYTES, MAX_CHUNK_BYTES, 3 * MiB]
    joined = b"".join([await _download(env, md, session_id, c.chunk_id) for c in listed.chunks])
    assert joined == data
    more = os.urandom(MiB)
    reply = await _stream(env, md, session_id, [more])
    assert reply.last_durable_sequence == 4 and reply.durable_bytes == len(data) + MiB


async def test_stop_flushes_the_open_stream_as_the_last_chunk(env: SessionsEnv) -> None:
    """§7.14: bytes received but not yet cut are stored as the last chunk on stop."""

    md = await env.token()
    session_id = await env.recording(md)
    data = os.urandom(MiB) * 12
    call = env.chunks.UploadChunks(metadata=md)
    await call.write(chunks_pb2.UploadChunksRequest(session_id=session_id, data=data[: 6 * MiB]))
    await call.write(chunks_pb2.UploadChunksRequest(data=data[6 * MiB :]))
    # Wait until the first 10 MiB are stored: the remaining 2 MiB are then in the buffer.

    async def first_chunk_durable() -> bool:
        status = await env.chunks.GetUploadStatus(
            chunks_pb2.GetUploadStatusRequest(session_id=session_id), metadata=md
        )
        return status.last_durable_sequence == 1

    await eventually(first_chunk_durable, timeout_s=20, what="the first chunk stored")
    await env.sessions.StopRecording(S.StopRecordingRequest(session_id=session_id), metadata=md)
    await call.done_writing()
    reply = await call
    assert reply.durable_bytes == len(data)
    listed = await env.chunks.ListChunks(
        chunks_pb2.ListChunksRequest(session_id=session_id), metadata=md
    )
    assert [c.size_bytes for c in listed.chunks] == [MAX_CHUNK_BYTES, 2 * MiB]
    await env.wait_state(md, session_id, {S.SESSION_STATE_COMPLETED})


async def test_pause_flushes_and_a_paused_pipeline_refuses_uploads(env: SessionsEnv) -> None:
    md = await env.token()
    session_id = await env.recording(md)
    pipeline = await env.sessions.PausePipeline(
        S.PausePipelineRequest(session_id=session_id), metadata=md
    )
    assert pipeline.pipeline.state == S.PIPELINE_STATE_PAUSED
    await expect_error(
        env.upload(md, session_id, 1, b"held back"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LUCID_ERR_4007",
    )
    await env.sessions.ResumePipeline(S.ResumePipelineRequest(session_id=session_id), metadata=md)
    await env.upload(md, session_id, 1, b"now")
    got = await env.sessions.GetPipeline(S.GetPipelineRequest(session_id=session_id), metadata=md)
    stages = {s.stage: s for s in got.pipeline.stages}
    assert stages[S.PIPELINE_STAGE_STORAGE].processed_count == 1
    assert stages[S.PIPELINE_STAGE_COMPRESSION].bytes_in == 3


async def test_three_anchoring_failures_fail_the_session_and_keep_its_chunks(
    env: SessionsEnv,
) -> None:
    """§7.13."""
    md = await env.token()
    session_id = await env.recording(md)
    chunk = await env.upload(md, session_id, 1, b"kept after failure")
    env.fake.mode = "refuse"
    try:
        await env.sessions.StopRecording(S.StopRecordingRequest(session_id=session_id), metadata=md)
        failed_session = await env.wait_state(md, session_id, {S.SESSION_STATE_FAILED})
    finally:
        env.fake.mode = "ok"
    assert env.fake.calls.count(session_id) == 3
    assert failed_session.anchoring.attempts == 3
    assert "anchoring failed" in failed_session.error_message
    assert await _download(env, md, session_id, chunk.chunk_id) == b"kept after failure"
    admin = await env.token(role=access_pb2.ROLE_SUPER_ADMIN)
    retried = await env.sessions.RetryAnchoring(
        S.RetryAnchoringRequest(session_id=session_id, reason="chain is back"), metadata=admin
    )
    assert retried.session.state == S.SESSION_STATE_PROCESSING
    await env.wait_state(md, session_id, {S.SESSION_STATE_COMPLETED})


async def test_an_open_circuit_to_the_chain_spends_no_anchoring_attempts(
    mesh: Mesh, settings: Settings
) -> None:
    """A chain outage fails three attempts and opens the breaker to the chain; while it is
    open, calls fail in our own channel layer, reach nothing, and are not attempts."""
    own = await start_env(mesh, settings)
    # Held open for the whole test (the default 1 s would let trial calls through).
    breakers = own.mesh.servers["sessions"].runtime.channels.breakers
    breakers.of("blockchain").policy = BreakerPolicy(failure_threshold=3, open_s=60.0)
    try:
        md = await own.token()
        session_id = await own.recording(md)
        await own.upload(md, session_id, 1, b"outage")
        own.fake.mode = "down"
        await own.sessions.StopRecording(S.StopRecordingRequest(session_id=session_id), metadata=md)
        failed_session = await own.wait_state(md, session_id, {S.SESSION_STATE_FAILED})
        assert failed_session.anchoring.attempts == 3
        assert own.fake.calls.count(session_id) == 3  # the third opened the breaker (3 for chain)
        admin = await own.token(role=access_pb2.ROLE_SUPER_ADMIN)
        await own.sessions.RetryAnchoring(
            S.RetryAnchoringRequest(session_id=session_id, reason="retry in the outage"),
            metadata=admin,
        )

        async def refused_by_the_breaker() -> bool:
            return "circuit" in (await own.get(md, session_id)).anchoring.error_message

        await eventually(refused_by_the_breaker, timeout_s=30, what="a refusal by the breaker")
        breaker = own.mesh.servers["sessions"].runtime.channels.breakers.of("blockchain")
        refused = breaker.rejected
        await eventually(  # ten more backoffs: still no attempt spent, nothing sent
            lambda: breaker.rejected >= refused + 10, timeout_s=30, what="ten more refusals"
        )
        session = await own.get(md, session_id)
        assert session.state == S.SESSION_STATE_PROCESSING
        assert session.anchoring.attempts == 0
        assert own.fake.calls.count(session_id) == 3
    finally:
        await own.channel.close()
        await own.mesh.stop_all()


async def test_expired_anchorings_count_as_failed_attempts(env: SessionsEnv) -> None:
    md = await env.token()
    session_id = await env.recording(md)
    await env.upload(md, session_id, 1, b"expires")
    env.fake.mode = "expire"
    try:
        await env.sessions.StopRecording(S.StopRecordingRequest(session_id=session_id), metadata=md)
        failed_session = await env.wait_state(md, session_id, {S.SESSION_STATE_FAILED})
    finally:
        env.fake.mode = "ok"
    assert failed_session.anchoring.attempts == 3


async def test_a_confirmed_anchoring_completes_the_session_only_once_final(
    env: SessionsEnv,
) -> None:
    """A block the chain reports confirmed but not final (approvals short of two thirds)
    leaves the session processing, however often the finalizer looks; final completes it."""
    md = await env.token()
    session_id = await env.recording(md)
    await env.upload(md, session_id, 1, b"waits for finality")
    env.fake.final = False
    try:
        await env.sessions.StopRecording(S.StopRecordingRequest(session_id=session_id), metadata=md)
        await eventually(
            lambda: session_id in env.fake.proofs and env.fake.status_calls.get(session_id, 0) >= 5,
            timeout_s=30,
            what="five looks at a confirmed, not final anchoring",
        )
    finally:
        env.fake.final = True
    assert env.fake.records[session_id].status == anchoring_pb2.ANCHORING_STATUS_CONFIRMED
    waiting = await env.get(md, session_id)
    assert waiting.state == S.SESSION_STATE_PROCESSING, waiting
    assert not waiting.anchoring.final
    env.fake.make_final(session_id)
    done = await env.wait_state(md, session_id, {S.SESSION_STATE_COMPLETED})
    assert done.anchoring.final and done.anchoring.status == S.ANCHORING_STATUS_CONFIRMED


async def test_a_session_without_chunks_fails_instead_of_anchoring(env: SessionsEnv) -> None:
    md = await env.token()
    session_id = await env.recording(md)
    await env.sessions.StopRecording(S.StopRecordingRequest(session_id=session_id), metadata=md)
    failed_session = await env.wait_state(md, session_id, {S.SESSION_STATE_FAILED})
    assert "no chunks" in failed_session.error_message
    assert session_id not in env.fake.calls


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the ``lucid`` command in a child process (with ``env`` added)."""
    return subprocess.run(
        [sys.executable, "-m", "lucid", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def completed_proofs(env: SessionsEnv, parts: list[bytes]) -> list[chunks_pb2.ChunkProof]:
    """Records ``parts`` as the chunks of a new session, stops it, waits until it is
    completed (anchored in a final block) and returns the proof of every chunk."""
    md = await env.token()
    session_id = await env.recording(md)
    chunks = [await env.upload(md, session_id, i, data) for i, data in enumerate(parts, 1)]
    await env.sessions.StopRecording(S.StopRecordingRequest(session_id=session_id), metadata=md)
    await env.wait_state(md, session_id, {S.SESSION_STATE_COMPLETED})
    return [
        (
            await env.chunks.GetChunkProof(
                chunks_pb2.GetChunkProofRequest(session_id=session_id, chunk_id=chunk.chunk_id),
                metadata=md,
            )
        ).proof
        for chunk in chunks
    ]


async def test_chunk_proofs_verify_offline_and_tampering_is_named(
    any_chain: SessionsEnv, tmp_path: Path
) -> None:
    env = any_chain
    anchor = await env.trust_anchor()
    for proof in await completed_proofs(env, [os.urandom(100 + i) for i in range(1, 6)]):
        checks = verify_chunk_proof(proof, anchor=anchor)
        assert not failed(checks), failed(checks)
    forged = chunks_pb2.ChunkProof()
    forged.CopyFrom(proof)
    forged.merkle_hash = hashlib.sha256(b"another blob").hexdigest()
    assert "chunk inclusion in the session root" in {
        c.name for c in failed(verify_chunk_proof(forged, anchor=anchor))
    }
    forged.CopyFrom(proof)
    assert len(forged.anchor.approvals) >= 2
    for approval in forged.anchor.approvals[1:]:  # one valid approval is not 2/3 of three
        approval.signature = forged.anchor.approvals[0].signature
    assert {c.name for c in failed(verify_chunk_proof(forged, anchor=anchor))} == {
        "validator approvals"
    }
    forged.CopyFrom(proof)
    forged.merkle_root = "00" * 32
    names = {c.name for c in failed(verify_chunk_proof(forged, anchor=anchor))}
    assert {"chunk inclusion in the session root", "manifest document"} <= names

    good, bad = tmp_path / "proof.json", tmp_path / "forged.json"
    trusted = tmp_path / "anchor.json"
    trusted.write_text(anchor.to_json())
    response = chunks_pb2.GetChunkProofResponse(proof=proof)
    good.write_text(json_format.MessageToJson(response, preserving_proto_field_name=True))
    bad.write_text(json_format.MessageToJson(forged, preserving_proto_field_name=True))
    ok = run_cli("proof", "verify", str(good), "--trust", str(trusted))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith("proof valid")
    if env.fake is None:  # a real chain serves its trust anchor (GetTrustAnchor)
        fetched = run_cli(
            "proof",
            "verify",
            str(good),
            "--chain",
            env.chain_address,
            env={"LUCID_VAR_DIR": str(env.settings.var_dir)},
        )
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        assert f"trust anchor: genesis {anchor.genesis_hash}" in fetched.stdout
    refused = run_cli("proof", "verify", str(bad), "--trust", str(trusted))
    assert refused.returncode == 1
    assert "FAIL chunk inclusion in the session root" in refused.stdout
    assert "proof NOT valid" in refused.stdout


def _approval_by(proof: chunks_pb2.ChunkProof, key: nacl.signing.SigningKey, name: str) -> None:
    """Replaces the first approval by a correctly signed one of ``key``."""
    approval = proof.anchor.approvals[0]
    approval.validator_id = name
    approval.public_key = bytes(key.verify_key).hex()
    approval.signature = key.sign(
        canonical.approval_message(
            proof.anchor.block_header.height, approval.round, proof.anchor.block_hash
        )
    ).signature.hex()


async def test_a_proof_is_checked_against_the_trust_anchor_not_its_own_keys(
    any_chain: SessionsEnv, tmp_path: Path
) -> None:
    """Issue 8 item 2: the keys a proof carries prove nothing; the anchor's set does."""
    env = any_chain
    anchor = await env.trust_anchor()
    [proof] = await completed_proofs(env, [os.urandom(300)])
    assert not failed(verify_chunk_proof(proof, anchor=anchor))

    # Another chain (fresh keys, its own genesis): every signature is sound, none trusted.
    other = FakeAnchoring().trust_anchor()
    assert other.genesis_hash != anchor.genesis_hash
    bad = {c.name: c.detail for c in failed(verify_chunk_proof(proof, anchor=other))}
    assert {"proposer signature", "approvers in the trusted set", "validator approvals"} <= set(bad)
    assert "transaction signer" in bad
    for approval in proof.anchor.approvals:
        assert approval.public_key in bad["approvers in the trusted set"]

    # One approval from a stranger's key, correctly signed: refused, and the key named.
    stranger = nacl.signing.SigningKey.generate()
    forged = chunks_pb2.ChunkProof()
    forged.CopyFrom(proof)
    _approval_by(forged, stranger, forged.anchor.approvals[0].validator_id)
    bad = {c.name: c.detail for c in failed(verify_chunk_proof(forged, anchor=anchor))}
    if len(proof.anchor.approvals) == 3:  # two trusted approvals of three remain: 2/3
        assert set(bad) == {"approvers in the trusted set"}, bad
    assert bytes(stranger.verify_key).hex() in bad["approvers in the trusted set"]
    _approval_by(forged, stranger, "validator-9")
    bad = {c.name: c.detail for c in failed(verify_chunk_proof(forged, anchor=anchor))}
    assert "validator-9" in bad["approvers in the trusted set"]

    # Fewer than two thirds: one valid approval of three.
    forged.CopyFrom(proof)
    del forged.anchor.approvals[1:]
    bad = {c.name: c.detail for c in failed(verify_chunk_proof(forged, anchor=anchor))}
    assert set(bad) == {"validator approvals"}, bad
    assert bad["validator approvals"].startswith("1 valid approvals")
    # The same approval three times still counts once.
    forged.anchor.approvals.extend([proof.anchor.approvals[0]] * 2)
    assert {c.name for c in failed(verify_chunk_proof(forged, anchor=anchor))} == {
        "validator approvals"
    }
    # A proof that claims a smaller set does not lower the bar.
    forged.CopyFrom(proof)
    forged.anchor.validator_count = 1
    del forged.anchor.approvals[1:]
    assert {c.name for c in failed(verify_chunk_proof(forged, anchor=anchor))} == {
        "validator approvals",
        "validator count",
    }

    path = tmp_path / "proof.json"
    path.write_text(
        json_format.MessageToJson(
            chunks_pb2.GetChunkProofResponse(proof=proof), preserving_proto_field_name=True
        )
    )
    unanchored = run_cli("proof", "verify", str(path))
    assert unanchored.returncode != 0
    assert "unanchored: pass --trust or --chain URL" in unanchored.stdout
    assert "proof valid" not in unanchored.stdout
    foreign = tmp_path / "other.json"
    foreign.write_text(other.to_json())
    refused = run_cli("proof", "verify", str(path), "--trust", str(foreign))
    assert refused.returncode == 1 and "FAIL approvers in the trusted set" in refused.stdout
    tampered = tmp_path / "tampered.json"
    document = anchor.document()
    document["validators"][0]["public_key"] = bytes(stranger.verify_key).hex()
    tampered.write_text(json.dumps(document))
    refused = run_cli("proof", "verify", str(path), "--trust", str(tampered))
    assert refused.returncode == 1
    assert "names another validator set" in refused.stdout
    unreachable = run_cli(
        "proof",
        "verify",
        str(path),
        "--chain",
        f"127.0.0.1:{free_port()}",
        env={"LUCID_VAR_DIR": str(env.settings.var_dir)},
    )
    assert unreachable.returncode == 1
    assert "FAIL the chain is unreachable" in unreachable.stdout
    unreachable = run_cli(
        "proof", "verify", str(path), "--chain", f"https://127.0.0.1:{free_port()}"
    )
    assert unreachable.returncode == 1
    assert "FAIL the chain is unreachable" in unreachable.stdout


async def test_statistics_and_events(env: SessionsEnv) -> None:
    md = await env.token()
    session_id = await env.recording(md, recording_config=S.RecordingConfig(frame_rate=10))
    await _stream(env, md, session_id, [bytes(1000)] * 5)
    stats = await env.sessions.GetSessionStatistics(
        S.GetSessionStatisticsRequest(session_id=session_id), metadata=md
    )
    assert stats.statistics.chunk_count == 1
    assert stats.statistics.original_size_bytes == 5000
    assert stats.statistics.frame_count == 5
    assert stats.statistics.duration.ToTimedelta().total_seconds() == pytest.approx(0.5)
    assert 0 < stats.statistics.compression_ratio < 1
    aggregate = await env.sessions.GetAggregateStatistics(
        S.GetAggregateStatisticsRequest(), metadata=md
    )
    assert aggregate.total_sessions == 1 and aggregate.active_recordings == 1
    assert aggregate.total_chunks == 1
    events = await env.sessions.ListSessionEvents(
        S.ListSessionEventsRequest(session_id=session_id), metadata=md
    )
    assert [e.event_type for e in events.events] == ["session.start", "session.create"]


async def test_creation_switch_and_stop_all(env: SessionsEnv) -> None:
    admin_channel = env.mesh.channel("sessions", identity="admin")
    try:
        stub = S and __import__("lucid.sessions.v1.sessions_pb2_grpc", fromlist=["x"])
        admin = stub.SessionServiceStub(admin_channel)
        md = await env.token()
        session_id = await env.recording(md)
        off = await admin.SetSessionCreationEnabled(
            S.SetSessionCreationEnabledRequest(enabled=False)
        )
        assert not off.enabled and off.HasField("revert_time")
        await expect_error(env.create(md), grpc.StatusCode.FAILED_PRECONDITION, "LUCID_ERR_4205")
        await admin.SetSessionCreationEnabled(S.SetSessionCreationEnabledRequest(enabled=True))
        await env.create(md)
        await env.upload(md, session_id, 1, b"stopped by an emergency")
        stopped = await admin.StopAllRecordings(
            S.StopAllRecordingsRequest(reason="drill", confirm=True)
        )
        assert session_id in stopped.session_ids
        await env.wait_state(md, session_id, {S.SESSION_STATE_COMPLETED})
    finally:
        await admin_channel.close()


async def test_trust_policies(env: SessionsEnv) -> None:
    tp = trust_pb2
    alice, bob = await env.token(), await env.token()
    rule = tp.TrustRule(rule_id="r1", effect=tp.RULE_EFFECT_ALLOW, condition="true", action="view")
    created = (
        await env.trust.CreateTrustPolicy(
            tp.CreateTrustPolicyRequest(name="p", rules=[rule], enabled=True), metadata=alice
        )
    ).policy
    got = await env.trust.GetTrustPolicy(
        tp.GetTrustPolicyRequest(policy_id=created.policy_id), metadata=alice
    )
    assert got.policy.rules[0].action == "view"
    await expect_error(
        env.trust.GetTrustPolicy(
            tp.GetTrustPolicyRequest(policy_id=created.policy_id), metadata=bob
        ),
        grpc.StatusCode.NOT_FOUND,
        "LUCID_ERR_4001",
    )
    updated = await env.trust.UpdateTrustPolicy(
        tp.UpdateTrustPolicyRequest(
            policy_id=created.policy_id,
            name="q",
            rules=[
                rule,
                tp.TrustRule(rule_id="r2", effect=tp.RULE_EFFECT_DENY, condition="x", action="y"),
            ],
        ),
        metadata=alice,
    )
    assert updated.policy.name == "q" and len(updated.policy.rules) == 2
    listed = await env.trust.ListTrustPolicies(tp.ListTrustPoliciesRequest(), metadata=alice)
    assert [p.policy_id for p in listed.policies] == [created.policy_id]
    await env.trust.DeleteTrustPolicy(
        tp.DeleteTrustPolicyRequest(policy_id=created.policy_id), metadata=alice
    )
    assert (
        await env.trust.ListTrustPolicies(tp.ListTrustPoliciesRequest(), metadata=alice)
    ).total_size == 0


def test_no_module_of_the_cluster_imports_tronpy() -> None:
    """§7.15."""
    root = Path(__file__).resolve().parents[1] / "lucid" / "sessions"
    for path in root.rglob("*.py"):
        assert "tronpy" not in path.read_text(), path
