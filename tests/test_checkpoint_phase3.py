"""The seed's phase-3 checkpoint, one test over real gRPC with the real chain (three
validator processes):
create session → record (synthetic screen source) → chunks processed → Merkle root
→ anchored → session completed with block height > 0 — and its chunk proofs
verify offline against the chain's trust anchor (``verify_chunk_proof`` and the
``lucid proof verify`` command, with the anchor from ``lucid chain trust-anchor``, from
``GetTrustAnchor`` over gRPC and over the edge's REST route).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from google.protobuf import json_format

from lucid.blockchain.v1 import anchoring_pb2, blockchain_pb2
from lucid.lib import merkle, trustanchor
from lucid.lib.chunkproof import failed, verify_chunk_proof
from lucid.runtime.chaintrust import anchor_of_response
from lucid.runtime.config import Settings
from lucid.sessions import app as sessions_app
from lucid.sessions.config import SessionsConfig
from lucid.sessions.frames import FrameSource
from lucid.sessions.v1 import chunks_pb2, manifests_pb2, sessions_pb2
from lucid.supervisor.localservers import free_port
from tests.chain_cluster import ValidatorCluster
from tests.chain_support import wait_for
from tests.sessionkit import SessionsEnv, wait_serving
from tests.support import Mesh, bearer, serve_edge

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
    chain_mesh: Mesh | None = None
    stack = contextlib.AsyncExitStack()
    channel: grpc.aio.Channel | None = None
    try:
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

        anchors = []
        for index in range(3):  # every validator states the same anchor, its genesis's
            async with validators.stubs(index) as chain:
                reply = await chain.chain.GetTrustAnchor(blockchain_pb2.GetTrustAnchorRequest())
                genesis_block = await chain.chain.GetBlock(
                    blockchain_pb2.GetBlockRequest(height=0), metadata=md
                )
            anchors.append(anchor_of_response(reply))
            assert anchors[-1].genesis_hash == genesis_block.block.hash
        anchor = anchors[0]
        assert anchors == [anchor] * 3 and anchor.validator_count == 3
        printed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "lucid", "chain", "trust-anchor", "--validator", "2"],
            env=validators.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert printed.returncode == 0, printed.stdout + printed.stderr
        assert trustanchor.loads(printed.stdout) == anchor  # the stored genesis agrees
        trust_file = tmp_path / "anchor.json"
        trust_file.write_text(printed.stdout)
        await mesh.start("gateway")
        edge_url = await stack.enter_async_context(serve_edge(own))
        cli_env = {**os.environ, "LUCID_VAR_DIR": str(own.var_dir)}
        ways = [
            ["--trust", str(trust_file)],
            ["--chain", f"127.0.0.1:{validators.ports[1]}"],
            ["--chain", edge_url, "--ca", str(own.certs_dir / "ca.crt")],
        ]

        for chunk in chunks:
            proof = (
                await env.chunks.GetChunkProof(
                    chunks_pb2.GetChunkProofRequest(
                        session_id=session.session_id, chunk_id=chunk.chunk_id
                    ),
                    metadata=md,
                )
            ).proof
            checks = verify_chunk_proof(proof, anchor=anchor)
            assert not failed(checks), failed(checks)
            path = tmp_path / f"proof-{chunk.sequence_number}.json"
            path.write_text(
                json_format.MessageToJson(
                    chunks_pb2.GetChunkProofResponse(proof=proof),
                    preserving_proto_field_name=True,
                )
            )
            way = ways[(chunk.sequence_number - 1) % len(ways)]
            result = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "lucid", "proof", "verify", str(path), *way],
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, (way, result.stdout + result.stderr)
            assert f"trust anchor: genesis {anchor.genesis_hash}" in result.stdout
            assert result.stdout.strip().endswith("proof valid")
    finally:
        await stack.aclose()
        if channel is not None:
            await channel.close()
        if chain_mesh is not None:
            await chain_mesh.stop_all()
        validators.stop_all()
