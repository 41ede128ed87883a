"""The demo's real desktop: an RDP server of the rdp cluster, recorded while a real
RDP client is logged into it.

As the signed-in user it creates and starts an RDP server (a real xrdp listener and
desktop account), opens an RDP session (the rdp cluster records it under the same id
through the sessions cluster), logs ``xfreerdp`` into the desktop (``rdpclient``),
waits until a few segments of the desktop are recorded, then terminates the session
and stops the server. Anything that keeps the desktop from being recorded raises
``DesktopFailedError`` with the reason, so the demo can say it and fall back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc

from lucid.rdp.v1 import rdp_pb2, rdp_pb2_grpc, session_pb2, session_pb2_grpc
from lucid.runtime.config import Settings
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from lucid.supervisor.demo import Metadata, channel
from lucid.supervisor.rdpclient import missing_tools, rdp_client

SEGMENTS = 2
"""Recorded segments (of 2 s each, the rdp cluster's default) the demo waits for."""
POLL_S = 0.3


class DesktopFailedError(Exception):
    """No real desktop could be recorded; the message says why."""


def unavailable() -> str | None:
    """Why a real desktop cannot be recorded here, or None."""
    missing = missing_tools()
    return f"the xrdp stack is not installed: no {', '.join(missing)}" if missing else None


async def _segments(
    sessions: sessions_pb2_grpc.SessionServiceStub, session_id: str, md: Metadata
) -> int:
    reply = await sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id=session_id), metadata=md
    )
    return int(reply.session.statistics.chunk_count)


async def _recorded(
    sessions: sessions_pb2_grpc.SessionServiceStub,
    session_id: str,
    md: Metadata,
    client_alive: asyncio.Future[int] | None,
    timeout_s: float,
) -> int:
    deadline = time.monotonic() + timeout_s
    while (count := await _segments(sessions, session_id, md)) < SEGMENTS:
        if time.monotonic() > deadline:
            raise DesktopFailedError(
                f"{count} of {SEGMENTS} desktop segments recorded in {timeout_s:.0f}s"
            )
        if client_alive is not None and client_alive.done():
            raise DesktopFailedError("the RDP client ended before the desktop was recorded")
        await asyncio.sleep(POLL_S)
    return count


async def record(settings: Settings, md: Metadata, timeout_s: float) -> tuple[str, str]:
    """Records a short real desktop session; its session id and the step's line."""
    async with (
        channel(settings, "rdp") as rdp_channel,
        channel(settings, "sessions") as sessions_channel,
    ):
        servers = rdp_pb2_grpc.RdpServerServiceStub(rdp_channel)
        rdp_sessions = session_pb2_grpc.RdpSessionServiceStub(rdp_channel)
        sessions = sessions_pb2_grpc.SessionServiceStub(sessions_channel)
        server_id = ""
        try:
            server = (
                await servers.CreateServer(
                    rdp_pb2.CreateServerRequest(name="lucid demo desktop"), metadata=md
                )
            ).server
            server_id = server.server_id
            await servers.StartServer(rdp_pb2.StartServerRequest(server_id=server_id), metadata=md)
            session = (
                await rdp_sessions.CreateRdpSession(
                    session_pb2.CreateRdpSessionRequest(server_id=server_id), metadata=md
                )
            ).session
            connected = await rdp_sessions.ConnectRdpSession(
                session_pb2.ConnectRdpSessionRequest(session_id=session.session_id), metadata=md
            )
            info = connected.connection_info
            log = settings.var_dir / "logs" / "demo-rdp-client.log"
            started = time.monotonic()
            async with rdp_client(
                info.server_ip, info.server_port, connected.username, connected.password, log
            ) as client:
                ended = asyncio.ensure_future(asyncio.to_thread(client.wait))
                try:
                    count = await _recorded(sessions, session.session_id, md, ended, timeout_s)
                finally:
                    ended.cancel()
                await rdp_sessions.TerminateRdpSession(
                    session_pb2.TerminateRdpSessionRequest(session_id=session.session_id),
                    metadata=md,
                )
            seconds = time.monotonic() - started
        except grpc.aio.AioRpcError as exc:
            raise DesktopFailedError(f"{exc.code().name}: {exc.details()}") from exc
        except (OSError, RuntimeError) as exc:
            raise DesktopFailedError(str(exc)) from exc
        finally:
            if server_id:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await servers.StopServer(
                        rdp_pb2.StopServerRequest(server_id=server_id, force=True), metadata=md
                    )
    return session.session_id, (
        f"recorded a real desktop: RDP server {server_id} (xrdp on {info.server_ip}:"
        f"{info.server_port}), xfreerdp logged in as {connected.username} for {seconds:.1f}s,"
        f" {count} segments recorded as session {session.session_id}"
    )
