"""``lucid demo``: one walk through a running mesh that shows it working end to end.

It signs in with a fresh TRON key (TIP-191 challenge), records a session from the
synthetic screen source, waits until its Merkle root is anchored in a final block of
``lucid_blocks``, checks a chunk's proof offline — the phase-1 and phase-3
checkpoints of the seed, against the real servers, as the operator identity over mTLS —
and then has the nodes cluster pay a dev node in USDT on the local TRON network
(``demopay``).
``make run`` runs it once the mesh serves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import grpc
from tronpy.keys import PrivateKey

from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.lib.chunkproof import failed, verify_chunk_proof
from lucid.lib.trustanchor import TrustAnchorError
from lucid.runtime import tls
from lucid.runtime.chaintrust import ChainUnreachableError, fetch_anchor
from lucid.runtime.config import Settings
from lucid.runtime.identity import OPERATOR
from lucid.sessions.frames import FrameSource
from lucid.sessions.v1 import chunks_pb2, chunks_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from lucid.supervisor.demopay import pay_a_dev_node

WIDTH, HEIGHT, FPS, FRAMES = 320, 240, 10, 60  # 13.8 MB of raw frames: two chunks


def channel(settings: Settings, cluster: str) -> grpc.aio.Channel:
    """An mTLS channel to a cluster as the operator identity."""
    credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, OPERATOR))
    return grpc.aio.secure_channel(
        f"{settings.host}:{settings.port(cluster)}",
        credentials,
        options=[("grpc.ssl_target_name_override", tls.dns_name(cluster))],
    )


async def sign_in(auth: auth_pb2_grpc.AuthServiceStub) -> auth_pb2.LoginResponse:
    """Signs in with a fresh TRON key (TIP-191 challenge)."""
    key = PrivateKey.random()
    address = key.public_key.to_base58check_address()
    challenge = await auth.IssueChallenge(auth_pb2.IssueChallengeRequest(tron_address=address))
    signature = key.sign_msg(challenge.message.encode()).hex()
    login: auth_pb2.LoginResponse = await auth.Login(
        auth_pb2.LoginRequest(tron_address=address, message=challenge.message, signature=signature)
    )
    return login


async def _frames(
    session_id: str, source: FrameSource
) -> AsyncIterator[chunks_pb2.UploadChunksRequest]:
    for index in range(FRAMES):
        request = chunks_pb2.UploadChunksRequest(data=source.frame(index), frame_count=1)
        if index == 0:
            request.session_id = session_id
            request.capture_time.GetCurrentTime()
        yield request


async def run_demo(
    settings: Settings, say: Callable[[str], None] = print, timeout_s: float = 120.0
) -> bool:
    """Walks through the mesh; returns whether every step held."""
    started = time.monotonic()
    async with (
        channel(settings, "auth") as auth_channel,
        channel(settings, "sessions") as sessions_channel,
    ):
        login = await sign_in(auth_pb2_grpc.AuthServiceStub(auth_channel))
        metadata = (("authorization", f"Bearer {login.tokens.access_token}"),)
        say(
            f"  ✓ signed in with a fresh TRON key {login.user.tron_address}"
            f" (user {login.user.user_id})"
        )

        sessions = sessions_pb2_grpc.SessionServiceStub(sessions_channel)
        chunks = chunks_pb2_grpc.ChunkServiceStub(sessions_channel)
        created = await sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(
                name="lucid demo",
                recording_config=sessions_pb2.RecordingConfig(
                    frame_rate=FPS, resolution=f"{WIDTH}x{HEIGHT}"
                ),
            ),
            metadata=metadata,
        )
        session_id = created.session.session_id
        await sessions.StartRecording(
            sessions_pb2.StartRecordingRequest(session_id=session_id), metadata=metadata
        )
        source = FrameSource(width=WIDTH, height=HEIGHT, fps=FPS, seed=7)
        upload = await chunks.UploadChunks(_frames(session_id, source), metadata=metadata)
        await sessions.StopRecording(
            sessions_pb2.StopRecordingRequest(session_id=session_id), metadata=metadata
        )
        say(
            f"  ✓ recorded session {session_id}: {upload.durable_bytes:,} bytes of frames in "
            f"{upload.last_durable_sequence} chunks (compressed, sealed, hashed, stored)"
        )

        deadline = time.monotonic() + timeout_s
        session = created.session
        while session.state != sessions_pb2.SESSION_STATE_COMPLETED:
            if session.state == sessions_pb2.SESSION_STATE_FAILED or time.monotonic() > deadline:
                say(f"  ✗ the session did not complete: {session.error_message or session.state}")
                return False
            await asyncio.sleep(0.5)
            session = (
                await sessions.GetSession(
                    sessions_pb2.GetSessionRequest(session_id=session_id), metadata=metadata
                )
            ).session
        say(
            f"  ✓ Merkle root {session.merkle_root[:16]}… anchored in final block "
            f"{session.anchoring.block_height} of lucid_blocks"
        )

        listed = await chunks.ListChunks(
            chunks_pb2.ListChunksRequest(session_id=session_id), metadata=metadata
        )
        proof = (
            await chunks.GetChunkProof(
                chunks_pb2.GetChunkProofRequest(
                    session_id=session_id, chunk_id=listed.chunks[0].chunk_id
                ),
                metadata=metadata,
            )
        ).proof
        try:
            anchor = await fetch_anchor(settings, f"{settings.host}:{settings.port('blockchain')}")
        except (ChainUnreachableError, TrustAnchorError) as exc:
            say(f"  ✗ no trust anchor from the chain: {exc}")
            return False
        say(
            f"  ✓ trust anchor: genesis {anchor.genesis_hash[:16]}…, "
            f"{anchor.validator_count} validators"
        )
        checks = verify_chunk_proof(proof, anchor=anchor)
        bad = failed(checks)
        if bad:
            say(f"  ✗ the chunk proof failed: {bad[0].name}: {bad[0].detail}")
            return False
        say(f"  ✓ chunk 1's proof verifies offline ({len(checks)} checks: chunk → root → block)")
    if not await pay_a_dev_node(settings, say, timeout_s):
        return False
    say(f"  walked through in {time.monotonic() - started:.1f}s")
    return True
