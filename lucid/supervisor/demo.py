"""``lucid demo``: one walk through a running mesh that shows it working end to end.

Step by step, with a progress display (a ``rich`` status while a step runs, then one
line per step with its time): it signs in with a fresh TRON key (TIP-191 challenge),
starts an RDP server and records a short real desktop session (an ``xfreerdp`` client
logs into the xrdp desktop, see ``demodesktop``; without the xrdp stack it records the
synthetic screen source and says why), waits until the recording's Merkle root is
anchored in a final block of ``lucid_blocks``, checks a chunk's proof offline against
the chain's trust anchor, waits until the dev node agents earn work credits, has the
nodes cluster pay a dev node in USDT on the local TRON network (``demopay``) and prints
the admin console's URL. Everything runs against the real servers, as the operator
identity over mTLS. ``make run`` runs it once the mesh serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from rich.console import Console
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
from lucid.supervisor import devnodes
from lucid.supervisor.demopay import pay_a_dev_node
from lucid.supervisor.envoy import console_dir

WIDTH, HEIGHT, FPS, FRAMES = 320, 240, 10, 60  # 13.8 MB of raw frames: two chunks
CREDITS_POLL_S = 1.0

Metadata = tuple[tuple[str, str], ...]


class StepFailedError(Exception):
    """A step of the demo did not hold; its message says why."""


def channel(settings: Settings, cluster: str) -> grpc.aio.Channel:
    """An mTLS channel to a cluster as the operator identity."""
    credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, OPERATOR))
    return grpc.aio.secure_channel(
        f"{settings.host}:{settings.port(cluster)}",
        credentials,
        options=[("grpc.ssl_target_name_override", tls.dns_name(cluster))],
    )


def console_url(settings: Settings) -> str:
    """Where the edge serves the admin console."""
    scheme = "https" if settings.edge_tls else "http"
    return f"{scheme}://localhost:{settings.edge_port}/admin/"


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


@dataclass
class Progress:
    """The progress display: a status line while a step runs, then its line and time."""

    console: Console

    @contextlib.asynccontextmanager
    async def step(self, doing: str) -> AsyncIterator[list[str]]:
        """Runs one step; the step appends the line(s) it reports to the yielded list
        (the first is the step's own line), or raises ``StepFailedError``."""
        lines: list[str] = []
        started = time.monotonic()
        with self.console.status(f"{doing}…"):
            try:
                yield lines
            except StepFailedError as exc:
                self.console.print(f"  ✗ {exc} ({time.monotonic() - started:.1f}s)")
                raise
        took = time.monotonic() - started
        first, *more = lines or [doing]
        self.console.print(f"  ✓ {first} ({took:.1f}s)")
        for line in more:
            self.console.print(f"    {line}")

    def note(self, line: str) -> None:
        """A line that is not a step (a fallback, a hint)."""
        self.console.print(f"  ! {line}")


async def _frames(
    session_id: str, source: FrameSource
) -> AsyncIterator[chunks_pb2.UploadChunksRequest]:
    for index in range(FRAMES):
        request = chunks_pb2.UploadChunksRequest(data=source.frame(index), frame_count=1)
        if index == 0:
            request.session_id = session_id
            request.capture_time.GetCurrentTime()
        yield request


async def record_synthetic(settings: Settings, md: Metadata) -> tuple[str, str]:
    """Records the synthetic screen source through the sessions cluster; the session id
    and the step's line."""
    async with channel(settings, "sessions") as sessions_channel:
        sessions = sessions_pb2_grpc.SessionServiceStub(sessions_channel)
        chunks = chunks_pb2_grpc.ChunkServiceStub(sessions_channel)
        created = await sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(
                name="lucid demo",
                recording_config=sessions_pb2.RecordingConfig(
                    frame_rate=FPS, resolution=f"{WIDTH}x{HEIGHT}"
                ),
            ),
            metadata=md,
        )
        session_id = created.session.session_id
        await sessions.StartRecording(
            sessions_pb2.StartRecordingRequest(session_id=session_id), metadata=md
        )
        source = FrameSource(width=WIDTH, height=HEIGHT, fps=FPS, seed=7)
        upload = await chunks.UploadChunks(_frames(session_id, source), metadata=md)
        await sessions.StopRecording(
            sessions_pb2.StopRecordingRequest(session_id=session_id), metadata=md
        )
    return session_id, (
        f"recorded session {session_id} from the synthetic screen source: "
        f"{upload.durable_bytes:,} bytes of frames in {upload.last_durable_sequence} chunks "
        "(compressed, sealed, hashed, stored)"
    )


async def wait_completed(
    sessions: sessions_pb2_grpc.SessionServiceStub, session_id: str, md: Metadata, timeout_s: float
) -> sessions_pb2.Session:
    """The session once COMPLETED (anchored); ``StepFailedError`` if it fails or times out."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply: sessions_pb2.GetSessionResponse = await sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session_id), metadata=md
        )
        session = reply.session
        if session.state == sessions_pb2.SESSION_STATE_COMPLETED:
            return session
        if session.state == sessions_pb2.SESSION_STATE_FAILED or time.monotonic() > deadline:
            state = sessions_pb2.SessionState.Name(session.state)
            raise StepFailedError(f"the session did not complete: {session.error_message or state}")
        await asyncio.sleep(0.3)


async def check_proof(settings: Settings, session_id: str, md: Metadata) -> str:
    """Verifies chunk 1's proof offline against the chain's trust anchor; the line."""
    async with channel(settings, "sessions") as sessions_channel:
        chunks = chunks_pb2_grpc.ChunkServiceStub(sessions_channel)
        listed = await chunks.ListChunks(
            chunks_pb2.ListChunksRequest(session_id=session_id), metadata=md
        )
        proof = (
            await chunks.GetChunkProof(
                chunks_pb2.GetChunkProofRequest(
                    session_id=session_id, chunk_id=listed.chunks[0].chunk_id
                ),
                metadata=md,
            )
        ).proof
    try:
        anchor = await fetch_anchor(settings, f"{settings.host}:{settings.port('blockchain')}")
    except (ChainUnreachableError, TrustAnchorError) as exc:
        raise StepFailedError(f"no trust anchor from the chain: {exc}") from exc
    checks = verify_chunk_proof(proof, anchor=anchor)
    bad = failed(checks)
    if bad:
        raise StepFailedError(f"the chunk proof failed: {bad[0].name}: {bad[0].detail}")
    return (
        f"chunk 1's proof verifies offline ({len(checks)} checks: chunk → root → block) "
        f"against the trust anchor: genesis {anchor.genesis_hash[:16]}…, "
        f"{anchor.validator_count} validators"
    )


async def nodes_earning(settings: Settings, timeout_s: float) -> str:
    """The dev nodes' credits once each has earned some (``StepFailedError`` at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.aio.AioRpcError, OSError):
            line = await devnodes.credits_line(settings)
            if line:
                return f"dev nodes active in {devnodes.POOL_NAME}, earning work credits: {line}"
        await asyncio.sleep(CREDITS_POLL_S)
    raise StepFailedError(
        "the dev nodes earned no work credits (see var/logs/dev-node-*.log; is `lucid up` running?)"
    )


async def _record(settings: Settings, md: Metadata, progress: Progress, timeout_s: float) -> str:
    """The recording step: a real desktop when the xrdp stack is here, else the synthetic
    screen source (and a note saying why)."""
    from lucid.supervisor import demodesktop  # noqa: PLC0415  (only for this step)

    reason = demodesktop.unavailable()
    if reason is None:
        async with progress.step("recording a real desktop over RDP") as lines:
            try:
                session_id, line = await demodesktop.record(settings, md, timeout_s)
            except demodesktop.DesktopFailedError as exc:
                reason = str(exc)
            else:
                lines.append(line)
                return session_id
    progress.note(f"no real desktop ({reason}): recording the synthetic screen source instead")
    async with progress.step("recording the synthetic screen source") as lines:
        session_id, line = await record_synthetic(settings, md)
        lines.append(line)
    return session_id


async def _walk(settings: Settings, progress: Progress, timeout_s: float) -> None:
    # the node agents earn while the recording goes on; the step waits for it later
    earning = asyncio.create_task(nodes_earning(settings, timeout_s))
    try:
        async with progress.step("signing in with a fresh TRON key") as lines:
            async with channel(settings, "auth") as auth_channel:
                login = await sign_in(auth_pb2_grpc.AuthServiceStub(auth_channel))
            lines.append(
                f"signed in with a fresh TRON key {login.user.tron_address}"
                f" (user {login.user.user_id})"
            )
        md: Metadata = (("authorization", f"Bearer {login.tokens.access_token}"),)
        session_id = await _record(settings, md, progress, timeout_s)

        async with progress.step("anchoring the recording") as lines:
            async with channel(settings, "sessions") as sessions_channel:
                sessions = sessions_pb2_grpc.SessionServiceStub(sessions_channel)
                session = await wait_completed(sessions, session_id, md, timeout_s)
            lines.append(
                f"Merkle root {session.merkle_root[:16]}… anchored in final block "
                f"{session.anchoring.block_height} of lucid_blocks"
            )
        async with progress.step("verifying a chunk proof offline") as lines:
            lines.append(await check_proof(settings, session_id, md))
        async with progress.step("waiting for the node agents to earn work credits") as lines:
            lines.append(await earning)
    finally:
        earning.cancel()
        with contextlib.suppress(asyncio.CancelledError, StepFailedError):
            await earning
    async with progress.step("paying a dev node on the local TRON network") as lines:
        said: list[str] = []
        if not await pay_a_dev_node(settings, said.append, timeout_s):
            raise StepFailedError(" ".join(line.strip().removeprefix("✗ ") for line in said))
        lines.extend(line.strip().removeprefix("✓ ") for line in said)


async def run_demo(
    settings: Settings, console: Console | None = None, timeout_s: float = 120.0
) -> bool:
    """Walks through the mesh; returns whether every step held."""
    console = console or Console(highlight=False, soft_wrap=True)
    progress = Progress(console)
    started = time.monotonic()
    try:
        await _walk(settings, progress, timeout_s)
    except StepFailedError:
        return False
    except grpc.aio.AioRpcError as exc:
        console.print(f"  ✗ {exc.code().name}: {exc.details()}")
        return False
    built = "" if console_dir() else " (not built yet: make console)"
    console.print(f"  admin console: {console_url(settings)}{built}")
    console.print(f"  walked through in {time.monotonic() - started:.1f}s")
    return True
