"""Fault test with real processes: the sessions cluster (``python -m lucid serve
sessions``) is killed with SIGKILL in the middle of an upload. After a restart the
client resumes from the last durable sequence; the finished session's manifest
lists every chunk exactly once and its root matches a root recomputed from the
blob files on disk."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from lucid.lib import merkle
from lucid.runtime.config import Settings
from lucid.sessions.blobformat import MAX_CHUNK_BYTES
from lucid.sessions.v1 import chunks_pb2, manifests_pb2, sessions_pb2
from lucid.supervisor.localservers import free_port
from tests.chainfake import FakeAnchoring, fake_chain_builder
from tests.sessionkit import SessionsEnv, SessionsProcess, retrying
from tests.support import Mesh

MiB = 1024 * 1024
TOTAL = 4 * MAX_CHUNK_BYTES + 5 * MiB + 12345
FRAME = MiB


async def _frames(
    session_id: str, data: bytes, start: int, hold: asyncio.Event | None = None
) -> AsyncIterator[chunks_pb2.UploadChunksRequest]:
    """The upload's frames from ``start``; with ``hold``, the stream waits for it once three
    chunks are sent (so a kill always lands mid-upload, however fast the server)."""
    first = True
    for offset in range(start, len(data), FRAME):
        if hold is not None and offset >= 3 * MAX_CHUNK_BYTES:
            await hold.wait()
        yield chunks_pb2.UploadChunksRequest(
            session_id=session_id if first else "",
            data=data[offset : offset + FRAME],
            frame_count=1,
        )
        first = False
        await asyncio.sleep(0)


async def test_sigkill_mid_upload_then_resume(
    mesh: Mesh, settings: Settings, tmp_path: Path
) -> None:
    ports = {**settings.ports, "sessions": free_port(), "blockchain": free_port()}
    own = settings.replace(ports=ports)
    chain = Mesh(own)
    fake = FakeAnchoring()
    await chain.start("blockchain", fake_chain_builder(fake))
    process = SessionsProcess(own, tmp_path / "sessions.log")
    channel = chain.channel("sessions")
    env = SessionsEnv(chain, mesh, fake, None, channel)  # type: ignore[arg-type]
    data = random.Random(42).randbytes(TOTAL)
    try:
        process.start()
        await process.wait_serving(channel)
        md = await env.token()
        session_id = await retrying(lambda: env.recording(md, name="killed mid-upload"))

        never = asyncio.Event()
        upload = asyncio.ensure_future(
            env.chunks.UploadChunks(_frames(session_id, data, 0, never), metadata=md)
        )
        while True:  # kill once two chunks are durable and the upload is still going
            status = await env.chunks.GetUploadStatus(
                chunks_pb2.GetUploadStatusRequest(session_id=session_id), metadata=md
            )
            if status.last_durable_sequence >= 2:
                break
            assert not upload.done(), upload
            await asyncio.sleep(0.01)
        process.kill()
        with pytest.raises(grpc.aio.AioRpcError) as killed:
            await upload
        assert killed.value.code() in (  # the server vanished mid-stream
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.INTERNAL,
        )

        process.start()
        await process.wait_serving(channel)
        status = await retrying(
            lambda: env.chunks.GetUploadStatus(
                chunks_pb2.GetUploadStatusRequest(session_id=session_id), metadata=md
            )
        )
        assert 2 <= status.last_durable_sequence < 5
        assert status.durable_bytes == status.last_durable_sequence * MAX_CHUNK_BYTES
        reply = await env.chunks.UploadChunks(
            _frames(session_id, data, status.durable_bytes), metadata=md
        )
        assert reply.durable_bytes == TOTAL and reply.last_durable_sequence == 5

        await env.sessions.StopRecording(
            sessions_pb2.StopRecordingRequest(session_id=session_id), metadata=md
        )
        done = await env.wait_state(md, session_id, {sessions_pb2.SESSION_STATE_COMPLETED}, 60)
        manifest = (
            await env.manifests.GetManifest(
                manifests_pb2.GetManifestRequest(session_id=session_id), metadata=md
            )
        ).manifest
        assert [c.index for c in manifest.chunks] == list(range(5))
        assert len({c.chunk_id for c in manifest.chunks}) == 5
        assert sum(c.size_bytes for c in manifest.chunks) == TOTAL
        blob_root = own.var_dir / "blobs" / "sessions"
        entries = [
            hashlib.sha256((blob_root / c.storage_path).read_bytes()).digest()
            for c in manifest.chunks
        ]
        assert [e.hex() for e in entries] == [c.merkle_hash for c in manifest.chunks]
        root = merkle.root(merkle.leaf_hash(e) for e in entries).hex()
        assert root == manifest.merkle_root == done.merkle_root
        assert fake.records[session_id].merkle_root == root
        restored = bytearray()
        for c in manifest.chunks:
            async for piece in env.chunks.DownloadChunk(
                chunks_pb2.DownloadChunkRequest(session_id=session_id, chunk_id=c.chunk_id),
                metadata=md,
            ):
                restored += piece.data
        assert hashlib.sha256(restored).digest() == hashlib.sha256(data).digest()
    finally:
        await channel.close()
        process.stop()
        await chain.stop_all()
