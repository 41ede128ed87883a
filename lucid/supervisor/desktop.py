"""``lucid desktop``: a real recorded desktop on a running mesh, for a person.

It signs in with a fresh TRON key, creates and starts an RDP server (a real xrdp
listener and desktop account), opens an RDP session (cluster 03 starts recording it
under the same id) and prints how to connect with an RDP client. When the person is
done (Enter, or after ``--seconds``) it terminates the session, waits until the
recording is anchored, and prints the ``lucid replay`` command that writes it as a
video with every segment verified.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

from lucid.auth.v1 import auth_pb2_grpc
from lucid.rdp.v1 import rdp_pb2, rdp_pb2_grpc, session_pb2, session_pb2_grpc
from lucid.runtime.config import Settings
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from lucid.supervisor.demo import channel, sign_in

ANCHOR_TIMEOUT_S = 180.0


async def _wait_done(seconds: float | None) -> None:
    if seconds is not None:
        await asyncio.sleep(seconds)  # the person's chosen recording time, not a wait
    else:
        await asyncio.to_thread(sys.stdin.readline)


async def _anchored(
    sessions: sessions_pb2_grpc.SessionServiceStub, session_id: str, md: tuple[tuple[str, str]]
) -> sessions_pb2.Session:
    """The recording once completed or failed (or when the wait is over)."""
    deadline = time.monotonic() + ANCHOR_TIMEOUT_S
    while True:
        request = sessions_pb2.GetSessionRequest(session_id=session_id)
        recording: sessions_pb2.Session = (await sessions.GetSession(request, metadata=md)).session
        done = (sessions_pb2.SESSION_STATE_COMPLETED, sessions_pb2.SESSION_STATE_FAILED)
        if recording.state in done or time.monotonic() > deadline:
            return recording
        await asyncio.sleep(0.5)


async def run_desktop(
    settings: Settings, say: Callable[[str], None] = print, seconds: float | None = None
) -> bool:
    """The walk; whether the recording was anchored."""
    async with (
        channel(settings, "auth") as auth_channel,
        channel(settings, "rdp") as rdp_channel,
        channel(settings, "sessions") as sessions_channel,
    ):
        login = await sign_in(auth_pb2_grpc.AuthServiceStub(auth_channel))
        token = login.tokens.access_token
        md = (("authorization", f"Bearer {token}"),)
        servers = rdp_pb2_grpc.RdpServerServiceStub(rdp_channel)
        rdp_sessions = session_pb2_grpc.RdpSessionServiceStub(rdp_channel)
        server = (
            await servers.CreateServer(rdp_pb2.CreateServerRequest(name="my desktop"), metadata=md)
        ).server
        await servers.StartServer(
            rdp_pb2.StartServerRequest(server_id=server.server_id), metadata=md
        )
        session = (
            await rdp_sessions.CreateRdpSession(
                session_pb2.CreateRdpSessionRequest(server_id=server.server_id), metadata=md
            )
        ).session
        connected = await rdp_sessions.ConnectRdpSession(
            session_pb2.ConnectRdpSessionRequest(session_id=session.session_id), metadata=md
        )
        info = connected.connection_info
        say(f"  ✓ signed in as user {login.user.user_id}")
        say(f"  ✓ RDP server {server.server_id} runs xrdp on {info.server_ip}:{info.server_port}")
        say(f"  ✓ RDP session {session.session_id} is being recorded")
        say("  connect with an RDP client (watch it live, type into the terminal):")
        say(
            f"    xfreerdp /v:{info.server_ip}:{info.server_port} /u:{connected.username}"
            f" /p:{connected.password} /cert:ignore"
        )
        say("  (Remmina or mstsc work too; the certificate is from the Lucid development CA)")
        say("  press Enter to end the session" if seconds is None else f"  recording {seconds}s")
        await _wait_done(seconds)
        await rdp_sessions.TerminateRdpSession(
            session_pb2.TerminateRdpSessionRequest(session_id=session.session_id), metadata=md
        )
        recording = await _anchored(
            sessions_pb2_grpc.SessionServiceStub(sessions_channel), session.session_id, md
        )
        if recording.state != sessions_pb2.SESSION_STATE_COMPLETED:
            say(f"  ✗ the recording did not complete: {recording.error_message or recording.state}")
            return False
        say(
            f"  ✓ {recording.statistics.chunk_count} segments anchored in final block"
            f" {recording.anchoring.block_height} of lucid_blocks"
        )
        say("  replay it, every segment checked against the anchored Merkle root:")
        chain = f"{settings.host}:{settings.port('blockchain')}"
        say(
            f"    LUCID_TOKEN={token} lucid replay {session.session_id} -o desktop.ts"
            f" --chain {chain}"
        )
        await servers.StopServer(
            rdp_pb2.StopServerRequest(server_id=server.server_id, force=True), metadata=md
        )
    return True
