"""Fault test with real processes: the sessions cluster (``python -m lucid serve
sessions``) is killed with SIGKILL in the middle of an upload. After a restart the
client resumes from the last durable sequence; the finished session's manifest
lists every chunk exactly once and its root matches a root recomputed from the
blob files on disk."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lucid.sessions.v1 import chunks_pb2, manifests_pb2, sessions_pb2

from lucid.lib import merkle
from lucid.runtime.config import Settings
from lucid.sessions.blobformat import MAX_CHUNK_BYTES
from lucid.supervisor.localservers import free_port
from tests.chainfake import FakeAnchoring, fake_chain_builder
from tests.sessionkit import SessionsEnv
from tests.support import Mesh

MiB = 1024 * 1024
TOTAL = 4 * MAX_CHUNK_BYTES + 5 * MiB + 12345
FRAME = MiB


def _environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUCID_")}
    env.update(
        {
            "LUCID_VAR_DIR": str(settings.var_dir),
            "LUCID_MONGODB_URI": settings.mongodb_uri,
            "LUCID_MONGODB_DB": settings.mongodb_db,
            "LUCID_REDIS_URL": settings.redis_url,
            "LUCID_KEY_PASSPHRASE": settings.key_passphrase,
            "LUCID_HEALTH_INTERVAL_S": "0.2",
            "LUCID_LOG_LEVEL": "WARNING",
            **{f"LUCID_PORT_{c.upper()}": str(p) for c, p in settings.ports.items()},
        }
    )
    return env


class SessionsProcess:
    """``python -m lucid serve sessions`` as a child process."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lucid", "serve", "sessions"],
                env=_environment(self.settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    async def wait_serving(self, channel: grpc.aio.Channel, timeout_s: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    # The schema and keys are made once the stores answered: wait for a real rpc.
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("sessions never served:\n" + self.log.read_text())
            await asyncio.sleep(0.2)


async def _frames(
    session_id: str, data: bytes, start: int
) -> AsyncIterator[chunks_pb2.UploadChunksRequest]:
    first = True
    for offset in range(start, len(data), FRAME):
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
        session_id = await _retrying(lambda: env.recording(md, name="killed mid-upload"))

        upload = asyncio.ensure_future(
            env.chunks.UploadChunks(_frames(session_id, data, 0), metadata=md)
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
        assert killed.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)

        process.start()
        await process.wait_serving(channel)
        status = await _retrying(
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


async def _retrying(make, attempts: int = 50):  # type: ignore[no-untyped-def]
    """Calls ``make()`` until it stops failing with UNAVAILABLE (a server that just started)."""
    for _ in range(attempts - 1):
        try:
            return await make()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.2)
    return await make()
