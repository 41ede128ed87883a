"""The seed's phase-3 checkpoint, one test over real gRPC with the real chain (three
validator processes):
create session → record (synthetic screen source) → chunks processed → Merkle root
→ anchored → session completed with block height > 0 — and its chunk proofs
verify offline (``verify_chunk_proof`` and the ``lucid proof verify`` command).
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from google.protobuf import json_format
from lucid.blockchain.v1 import anchoring_pb2
from lucid.sessions.v1 import chunks_pb2, manifests_pb2, sessions_pb2

from lucid.lib import merkle
from lucid.runtime.config import Settings
from lucid.sessions import app as sessions_app
from lucid.sessions.config import SessionsConfig
from lucid.sessions.frames import FrameSource
from lucid.sessions.proofs import failed, verify_chunk_proof
from lucid.supervisor.localservers import free_port
from tests.chain_cluster import ValidatorCluster
from tests.chain_support import wait_for
from tests.sessionkit import SessionsEnv, wait_serving
from tests.support import Mesh, bearer

WIDTH, HEIGHT, FPS, SECONDS = 320, 240, 30, 8


async def _record(
    session_id: str, source: FrameSource
) -> AsyncIterator[chunks_pb2.UploadChunksRequest]:
    for index in range(FPS * SECONDS):
        request = chunks_pb2.UploadChunksRequest(data=source.frame(index), frame_count=1)
        if index == 0:
            request.session_id = session_id
            request.capture_time.GetCurrentTime()
        yield request
        await asyncio.sleep(0)


async def test_phase3_checkpoint(mesh: Mesh, settings: Settings, tmp_path: Path) -> None:
    validators = ValidatorCluster(settings, tmp_path / "chain", count=3, block_interval_s=0.2)
    validators.start_all()
    for index in range(3):
        async with validators.stubs(index) as stubs:
            await wait_for(stubs.ready, timeout_s=90)
    ports = {**settings.ports, "sessions": free_port(), "blockchain": validators.ports[0]}
    own = settings.replace(ports=ports)
    chain_mesh = Mesh(own)
    config = SessionsConfig.of(own, blob_root=tmp_path / "blobs", anchor_poll_s=0.1)
    server = await chain_mesh.start(
        "sessions", functools.partial(sessions_app.build, config=config)
    )
    await wait_serving(server)
    channel = chain_mesh.channel("sessions")
    env = SessionsEnv(chain_mesh, mesh, None, config, channel)  # type: ignore[arg-type]
    try:
        md = bearer(await mesh.token())
        session = await env.create(
            md,
            name="phase 3 checkpoint",
            recording_config=sessions_pb2.RecordingConfig(
                frame_rate=FPS, resolution=f"{WIDTH}x{HEIGHT}"
            ),
        )
        await env.sessions.StartRecording(
            sessions_pb2.StartRecordingRequest(session_id=session.session_id), metadata=md
        )
        source = FrameSource(width=WIDTH, height=HEIGHT, fps=FPS, seed=3)
        reply = await env.chunks.UploadChunks(_record(session.session_id, source), metadata=md)
        total = FPS * SECONDS * source.frame_bytes
        assert reply.durable_bytes == total
        assert reply.last_durable_sequence == -(-total // (10 * 1024 * 1024))

        await env.sessions.StopRecording(
            sessions_pb2.StopRecordingRequest(session_id=session.session_id), metadata=md
        )
        done = await env.wait_state(
            md, session.session_id, {sessions_pb2.SESSION_STATE_COMPLETED}, timeout_s=120
        )
        assert done.anchoring.final and done.anchoring.block_height > 0
        assert done.statistics.frame_count == FPS * SECONDS

        chunks = (
            await env.chunks.ListChunks(
                chunks_pb2.ListChunksRequest(session_id=session.session_id), metadata=md
            )
        ).chunks
        root = merkle.root(merkle.leaf_hash(bytes.fromhex(c.merkle_hash)) for c in chunks).hex()
        manifest = (
            await env.manifests.GetManifest(
                manifests_pb2.GetManifestRequest(session_id=session.session_id, summary_only=True),
                metadata=md,
            )
        ).manifest
        assert root == manifest.merkle_root == done.merkle_root
        assert manifest.blockchain_anchored

        for index in range(3):  # every validator holds the anchor in the same final block
            async with validators.stubs(index) as chain:
                verified = await chain.anchoring.VerifyAnchoring(
                    anchoring_pb2.VerifyAnchoringRequest(
                        session_id=session.session_id, merkle_root=root
                    ),
                    metadata=md,
                )
            assert verified.verified and verified.merkle_proof_valid, (index, verified)
            assert verified.block_height == done.anchoring.block_height
            assert verified.block_hash == done.anchoring.block_hash

        for chunk in chunks:
            proof = (
                await env.chunks.GetChunkProof(
                    chunks_pb2.GetChunkProofRequest(
                        session_id=session.session_id, chunk_id=chunk.chunk_id
                    ),
                    metadata=md,
                )
            ).proof
            assert not failed(verify_chunk_proof(proof)), failed(verify_chunk_proof(proof))
            path = tmp_path / f"proof-{chunk.sequence_number}.json"
            path.write_text(
                json_format.MessageToJson(
                    chunks_pb2.GetChunkProofResponse(proof=proof),
                    preserving_proto_field_name=True,
                )
            )
            result = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "lucid", "proof", "verify", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stdout + result.stderr
    finally:
        await channel.close()
        await chain_mesh.stop_all()
        validators.stop_all()
