"""RDP sessions on a real xrdp server, recorded by the real sessions cluster
(spec 04 §7 checks 4, 7, 8, 9, 11, 12)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from lucid.common.v1 import access_pb2
from lucid.lib.clock import FakeClock
from lucid.rdp.app import SERVICE_ACTOR
from lucid.rdp.backend import Display
from lucid.rdp.v1 import rdp_pb2, session_pb2, session_pb2_grpc, xrdp_pb2
from lucid.runtime.config import Settings
from lucid.sessions.v1 import sessions_pb2
from tests.rdpkit import RdpEnv, rdp_client, start_rdp, stop_rdp
from tests.support import Mesh, bearer, details
from tests.waiting import eventually

IDLE_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
async def env(
    mesh: Mesh, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RdpEnv]:
    rdp = await start_rdp(
        mesh, settings, tmp_path_factory.mktemp("rdp-sessions"), idle_timeout_s=IDLE_TIMEOUT_S
    )
    try:
        yield rdp
    finally:
        await stop_rdp(rdp)


@pytest.fixture(scope="module")
async def running(env: RdpEnv) -> tuple[rdp_pb2.Server, tuple[tuple[str, str]]]:
    """A running server of one user, and that user's call metadata."""
    _, md = await env.user()
    server = await env.create_server(md)
    await env.start_server(md, server.server_id)
    return server, md


async def state_of(env: RdpEnv, md: object, session_id: str) -> int:
    response = await env.sessions.GetRdpSession(
        session_pb2.GetRdpSessionRequest(session_id=session_id), metadata=md
    )
    return response.session.state


async def test_connect_disconnect_terminate_and_the_recording_in_cluster_03(
    env: RdpEnv, running: tuple[rdp_pb2.Server, tuple[tuple[str, str]]]
) -> None:
    server, md = running
    session = await env.create_session(md, server.server_id)
    assert session.state == session_pb2.RDP_SESSION_STATE_ACTIVE
    recording = await env.sessions_env.get(md, session.session_id)
    assert recording.state == sessions_pb2.SESSION_STATE_RECORDING
    assert recording.rdp_server_id == server.server_id
    assert (recording.rdp_config.host, recording.rdp_config.port) == ("127.0.0.1", server.port)

    connect = session_pb2.ConnectRdpSessionRequest(session_id=session.session_id)
    first = await env.sessions.ConnectRdpSession(connect, metadata=md)
    assert len(first.access_token) >= 43
    assert abs(first.expire_time.seconds - time.time() - 3600) < 120
    assert first.connection_info.server_port == server.port
    assert first.username.startswith(env.config.account_prefix) and len(first.password) >= 20
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.sessions.ConnectRdpSession(connect, metadata=md)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(caught.value).reason == "LUCID_ERR_4305"

    dropped = await env.sessions.DisconnectRdpSession(
        session_pb2.DisconnectRdpSessionRequest(session_id=session.session_id), metadata=md
    )
    assert dropped.session.state == session_pb2.RDP_SESSION_STATE_DISCONNECTED
    again = await env.sessions.ConnectRdpSession(connect, metadata=md)
    assert again.access_token != first.access_token
    assert again.password != first.password  # one password per connection

    stop = rdp_pb2.StopServerRequest(server_id=server.server_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.servers.StopServer(stop, metadata=md)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(caught.value).reason == "LUCID_ERR_4304"
    assert await state_of(env, md, session.session_id) == session_pb2.RDP_SESSION_STATE_ACTIVE

    stop.force = True
    stopped = await env.servers.StopServer(stop, metadata=md)
    assert stopped.result.terminated_sessions == 1
    assert stopped.result.state == rdp_pb2.SERVER_STATE_STOPPED
    assert await state_of(env, md, session.session_id) == session_pb2.RDP_SESSION_STATE_TERMINATED
    finished = await env.sessions_env.get(md, session.session_id)
    assert finished.state != sessions_pb2.SESSION_STATE_RECORDING
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.sessions.TerminateRdpSession(
            session_pb2.TerminateRdpSessionRequest(session_id=session.session_id), metadata=md
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await env.start_server(md, server.server_id)


async def test_an_idle_session_is_disconnected(
    env: RdpEnv, running: tuple[rdp_pb2.Server, tuple[tuple[str, str]]]
) -> None:
    server, md = running
    session = await env.create_session(md, server.server_id)

    async def state() -> int:
        return await state_of(env, md, session.session_id)

    async def disconnected() -> bool:
        return await state() == session_pb2.RDP_SESSION_STATE_DISCONNECTED

    await eventually(disconnected, timeout_s=IDLE_TIMEOUT_S + 30, what="the idle session cut")
    await env.sessions.TerminateRdpSession(
        session_pb2.TerminateRdpSessionRequest(session_id=session.session_id), metadata=md
    )
    assert await state() == session_pb2.RDP_SESSION_STATE_TERMINATED


async def test_a_user_cannot_open_or_connect_sessions_of_another_user(
    env: RdpEnv, running: tuple[rdp_pb2.Server, tuple[tuple[str, str]]]
) -> None:
    server, md = running
    _, other = await env.user()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.create_session(other, server.server_id)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    session = await env.create_session(md, server.server_id)
    for call, request in (
        (
            env.sessions.ConnectRdpSession,
            session_pb2.ConnectRdpSessionRequest(session_id=session.session_id),
        ),
        (
            env.sessions.GetRdpSession,
            session_pb2.GetRdpSessionRequest(session_id=session.session_id),
        ),
        (
            env.sessions.TerminateRdpSession,
            session_pb2.TerminateRdpSessionRequest(session_id=session.session_id),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request, metadata=other)  # type: ignore[operator]
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await state_of(env, md, session.session_id) == session_pb2.RDP_SESSION_STATE_ACTIVE
    await env.sessions.TerminateRdpSession(
        session_pb2.TerminateRdpSessionRequest(session_id=session.session_id), metadata=md
    )


async def test_only_super_admins_change_the_xrdp_configuration(env: RdpEnv) -> None:
    for role in (access_pb2.ROLE_NODE_OPERATOR, access_pb2.ROLE_ADMIN):
        md = bearer(await env.sessions_env.main.token(role=role))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.xrdp.UpdateXrdpConfig(xrdp_pb2.UpdateXrdpConfigRequest(), metadata=md)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_201st_session_call_in_a_minute_is_refused(env: RdpEnv) -> None:
    limits = env.rdp_sessions_servicer.calls.limiter
    real_clock, limits.clock = limits.clock, FakeClock()  # the 201 calls in one instant
    try:
        _, md = await env.user()
        missing = session_pb2.GetRdpSessionRequest(
            session_id="00000000-0000-4000-8000-000000000000"
        )

        async def one() -> grpc.StatusCode:
            try:
                await env.sessions.GetRdpSession(missing, metadata=md)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(one() for _ in range(200)))
        assert set(codes) == {grpc.StatusCode.NOT_FOUND}
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.sessions.GetRdpSession(missing, metadata=md)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details(caught.value).reason == "LUCID_ERR_3001"
        _, fresh = await env.user()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.sessions.GetRdpSession(missing, metadata=fresh)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        limits.clock = real_clock


async def test_the_admin_cluster_terminates_every_session_and_lists_them(
    env: RdpEnv, running: tuple[rdp_pb2.Server, tuple[tuple[str, str]]]
) -> None:
    server, md = running
    opened = [await env.create_session(md, server.server_id) for _ in range(2)]
    listed = await env.sessions.ListRdpSessions(
        session_pb2.ListRdpSessionsRequest(
            server_id=server.server_id, state=session_pb2.RDP_SESSION_STATE_ACTIVE
        ),
        metadata=md,
    )
    assert {s.session_id for s in opened} <= {s.session_id for s in listed.sessions}
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # service-only: not for users
        await env.sessions.TerminateAllRdpSessions(
            session_pb2.TerminateAllRdpSessionsRequest(reason="drill"), metadata=md
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    admin_channel = env.sessions_env.mesh.channel("rdp", identity="admin")
    try:
        done = await session_pb2_grpc.RdpSessionServiceStub(admin_channel).TerminateAllRdpSessions(
            session_pb2.TerminateAllRdpSessionsRequest(reason="drill")
        )
    finally:
        await admin_channel.close()
    assert done.terminated_count >= 2 and done.failed_count == 0
    for session in opened:
        got = await env.sessions.GetRdpSession(
            session_pb2.GetRdpSessionRequest(session_id=session.session_id), metadata=md
        )
        assert got.session.state == session_pb2.RDP_SESSION_STATE_TERMINATED
        assert got.session.termination_reason == "emergency: drill"


async def test_recorders_of_open_sessions_resume_after_a_restart(
    env: RdpEnv, running: tuple[rdp_pb2.Server, tuple[tuple[str, str]]]
) -> None:
    server, md = running
    session = await env.create_session(md, server.server_id)
    recorder = env.domain_sessions.recorder
    assert recorder.stats(session.session_id) is not None
    await recorder.stop(session.session_id)  # as if the rdp process had died
    assert recorder.stats(session.session_id) is None
    assert await env.domain_sessions.resume_recordings() >= 1
    assert recorder.stats(session.session_id) is not None
    await env.sessions.TerminateRdpSession(
        session_pb2.TerminateRdpSessionRequest(session_id=session.session_id), metadata=md
    )
    assert recorder.stats(session.session_id) is None


async def test_a_connected_client_without_input_is_idle(
    env: RdpEnv, running: tuple[rdp_pb2.Server, tuple[tuple[str, str]]], tmp_path: Path
) -> None:
    """Idle is the desktop's input, not a connected client: a client that sends no
    input for the idle timeout is disconnected."""
    server, md = running
    session = await env.create_session(md, server.server_id)
    connected = await env.sessions.ConnectRdpSession(
        session_pb2.ConnectRdpSessionRequest(session_id=session.session_id), metadata=md
    )
    async with rdp_client(
        "127.0.0.1", server.port, connected.username, connected.password, tmp_path / "c.log"
    ):

        async def desktop() -> Display | None:
            return await asyncio.to_thread(env.backend.display, connected.username)

        display = await eventually(desktop, timeout_s=60.0, what="the desktop's X display")
        assert display is not None
        # input on the desktop resets its idle time (straight to the session's display:
        # the client may already be cut for idleness, the desktop stays)
        await asyncio.to_thread(
            subprocess.run,
            ["xdotool", "mousemove", "300", "310"],
            env={**os.environ, "DISPLAY": display.name, "XAUTHORITY": str(display.xauthority)},
            check=True,
            timeout=30,
        )
        idle = await asyncio.to_thread(env.backend.input_idle_s, display)
        assert idle is not None and idle < 1.0

        async def disconnected() -> bool:
            state = await state_of(env, md, session.session_id)
            return state == session_pb2.RDP_SESSION_STATE_DISCONNECTED

        # the client stays connected (it counted as activity before), the input stops
        await eventually(disconnected, timeout_s=IDLE_TIMEOUT_S + 30, what="the idle cut")
    await env.sessions.TerminateRdpSession(
        session_pb2.TerminateRdpSessionRequest(session_id=session.session_id), metadata=md
    )


async def test_a_session_past_the_maximum_duration_limit_is_terminated(
    env: RdpEnv, running: tuple[rdp_pb2.Server, tuple[tuple[str, str]]]
) -> None:
    """Last in this module: it moves the sessions' clock, which ends older sessions."""
    server, md = running
    resources, domain = env.domain_resources, env.domain_sessions
    assert env.config.session_timeout_s == 3600
    await resources.update_limits(SERVICE_ACTOR, {"session_max_duration_s": 300})
    real_clock = domain.clock
    try:
        session = await env.create_session(md, server.server_id)
        created = real_clock.now()
        domain.clock = FakeClock(created + timedelta(seconds=200))
        await domain.sweep(SERVICE_ACTOR)  # within the limit: only idle
        assert await state_of(env, md, session.session_id) in (
            session_pb2.RDP_SESSION_STATE_ACTIVE,
            session_pb2.RDP_SESSION_STATE_DISCONNECTED,
        )
        domain.clock = FakeClock(created + timedelta(seconds=301))

        async def ended() -> bool:
            state = await state_of(env, md, session.session_id)
            return state == session_pb2.RDP_SESSION_STATE_TERMINATED

        await eventually(ended, timeout_s=30.0, what="the session ended at its maximum duration")
        got = await env.sessions.GetRdpSession(
            session_pb2.GetRdpSessionRequest(session_id=session.session_id), metadata=md
        )
        assert got.session.termination_reason == "timeout"
    finally:
        domain.clock = real_clock
        await resources.update_limits(SERVICE_ACTOR, {"session_max_duration_s": 3600})
