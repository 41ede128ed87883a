"""Helpers of the rdp tests: an rdp server wired to a private sessions server and
scripted chain, a real RDP client (xfreerdp under Xvfb), and short calls."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from lucid.rdp import app as rdp_app
from lucid.rdp.backend import XrdpBackend
from lucid.rdp.config import RdpConfig
from lucid.rdp.rdpsessions import RdpSessions
from lucid.rdp.resources import Resources
from lucid.rdp.servers import Servers
from lucid.rdp.servicers.resources import ResourceServicer
from lucid.rdp.servicers.servers import RdpServerServicer
from lucid.rdp.servicers.sessions import RdpSessionServicer
from lucid.rdp.v1 import (
    rdp_pb2,
    rdp_pb2_grpc,
    resource_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    xrdp_pb2_grpc,
)
from lucid.runtime.server import ClusterServer
from lucid.supervisor.localservers import free_port
from lucid.supervisor.rdpclient import free_display, xfreerdp_argv
from tests.sessionkit import SessionsEnv, process_environment, start_env, wait_serving
from tests.support import Mesh, bearer
from tests.waiting import eventually

REAL_DESKTOP_TOOLS = ("xrdp", "xrdp-sesman", "Xvnc", "Xvfb", "xfreerdp", "xdotool", "xterm")


def free_port_block(count: int, first: int = 33890, last: int = 33999) -> int:
    """The first of ``count`` consecutive bindable ports in ``first``..``last``."""
    start = first
    while start + count - 1 <= last:
        for port in range(start, start + count):
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    start = port + 1
                    break
        else:
            return start
    raise AssertionError("no free block of RDP ports")


@dataclass
class RdpEnv:
    """An rdp server on its own port, with its sessions server and scripted chain."""

    sessions_env: SessionsEnv
    server: ClusterServer
    config: RdpConfig
    channel: grpc.aio.Channel

    @property
    def servers(self) -> rdp_pb2_grpc.RdpServerServiceStub:
        """RdpServerService."""
        return rdp_pb2_grpc.RdpServerServiceStub(self.channel)

    @property
    def xrdp(self) -> xrdp_pb2_grpc.XrdpServiceStub:
        """XrdpService."""
        return xrdp_pb2_grpc.XrdpServiceStub(self.channel)

    @property
    def sessions(self) -> session_pb2_grpc.RdpSessionServiceStub:
        """RdpSessionService."""
        return session_pb2_grpc.RdpSessionServiceStub(self.channel)

    def _servicer(self, kind: type[Any]) -> Any:
        return next(s for _, s in self.server.app.servicers if isinstance(s, kind))

    @property
    def domain_servers(self) -> Servers:
        """The server lifecycle inside the running rdp server."""
        return self._servicer(RdpServerServicer).servers  # type: ignore[no-any-return]

    @property
    def rdp_sessions_servicer(self) -> RdpSessionServicer:
        """The RdpSessionService servicer of the running rdp server."""
        return self._servicer(RdpSessionServicer)  # type: ignore[no-any-return]

    @property
    def domain_sessions(self) -> RdpSessions:
        """The session rules inside the running rdp server."""
        return self._servicer(RdpSessionServicer).sessions  # type: ignore[no-any-return]

    @property
    def domain_resources(self) -> Resources:
        """Resource monitoring inside the running rdp server."""
        return self._servicer(ResourceServicer).resources  # type: ignore[no-any-return]

    @property
    def resources(self) -> resource_pb2_grpc.ResourceServiceStub:
        """ResourceService."""
        return resource_pb2_grpc.ResourceServiceStub(self.channel)

    @property
    def backend(self) -> XrdpBackend:
        """The xrdp backend."""
        backend = self.domain_servers.backend
        assert isinstance(backend, XrdpBackend)
        return backend

    async def user(self) -> tuple[str, tuple[tuple[str, str]]]:
        """A fresh user id and call metadata with their token."""
        user_id = str(uuid.uuid4())
        return user_id, bearer(await self.sessions_env.main.token(user_id=user_id))

    async def create_server(self, md: Any, **fields: Any) -> rdp_pb2.Server:
        """CreateServer."""
        fields.setdefault("name", "a desktop")
        response = await self.servers.CreateServer(
            rdp_pb2.CreateServerRequest(**fields), metadata=md
        )
        return response.server

    async def start_server(self, md: Any, server_id: str) -> rdp_pb2.Server:
        """StartServer."""
        response = await self.servers.StartServer(
            rdp_pb2.StartServerRequest(server_id=server_id), metadata=md
        )
        return response.result.server

    async def delete_server(self, md: Any, server_id: str) -> None:
        """DeleteServer."""
        await self.servers.DeleteServer(
            rdp_pb2.DeleteServerRequest(server_id=server_id), metadata=md
        )

    async def create_session(self, md: Any, server_id: str) -> session_pb2.RdpSession:
        """CreateRdpSession."""
        response = await self.sessions.CreateRdpSession(
            session_pb2.CreateRdpSessionRequest(server_id=server_id), metadata=md
        )
        return response.session


async def start_rdp(main: Mesh, settings: Any, tmp: Path, **config: Any) -> RdpEnv:
    """Sessions + scripted chain + rdp, on new ports; instances under ``tmp``."""
    sessions_env = await start_env(main, settings)
    ports = {**sessions_env.settings.ports, "rdp": free_port()}
    sessions_env.mesh.settings = sessions_env.settings.replace(ports=ports)
    first = free_port_block(4)
    cfg = RdpConfig.of(
        sessions_env.settings,
        instances_dir=tmp / "rdp",
        port_first=first,
        port_last=first + 3,
        monitor_interval_s=0.5,
        sweep_interval_s=0.2,
        start_wait_s=10.0,
        stop_grace_s=5.0,
        resource_interval_s=3600.0,
        **config,
    )
    build = functools.partial(rdp_app.build, config=cfg, anchor=sessions_env.trust_anchor)
    server = await sessions_env.mesh.start("rdp", build)
    await wait_serving(server)
    return RdpEnv(sessions_env, server, cfg, sessions_env.mesh.channel("rdp"))


async def stop_rdp(env: RdpEnv) -> None:
    """Deletes what the tests left (accounts, instances) and stops the servers."""
    servers = env.domain_servers
    actor = rdp_app.SERVICE_ACTOR
    for session in (
        await env.domain_sessions.find(actor, user_id="", server_id="", state="", offset=0, limit=0)
    )[0]:
        if session.state != "terminated":
            with contextlib.suppress(Exception):
                await env.domain_sessions.terminate(actor, session.session_id, force=True)
    for record in (await servers.find(actor, state="", user_id="", offset=0, limit=0))[0]:
        with contextlib.suppress(Exception):
            await servers.delete(actor, record.server_id)
    await env.channel.close()
    await env.sessions_env.mesh.stop_all()


def have_desktop_tools() -> bool:
    """Whether the real xrdp stack is installed (``make test`` installs it)."""
    return all(shutil.which(tool) for tool in REAL_DESKTOP_TOOLS)


@dataclass
class RdpClient:
    """A real RDP client: xfreerdp on a private Xvfb display."""

    xvfb: subprocess.Popen[bytes]
    client: subprocess.Popen[bytes]
    display: str
    log: Path

    def stop(self) -> None:
        """Ends the client and its display."""
        for process in (self.client, self.xvfb):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)

    def xdotool(self, *args: str) -> None:
        """Runs xdotool against the client's display (input goes over RDP)."""
        subprocess.run(
            ["xdotool", *args], env={**os.environ, "DISPLAY": self.display}, check=True, timeout=30
        )


def _popen(argv: list[str], env: dict[str, str], out: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=out)


@contextlib.asynccontextmanager
async def rdp_client(
    host: str, port: int, username: str, password: str, log: Path
) -> AsyncIterator[RdpClient]:
    """xfreerdp connected to ``host:port`` as ``username`` (certificate not checked)."""
    number = free_display(200)  # below the demo's displays (300 on)
    display = f":{number}"
    out = log.open("ab")
    xvfb = await asyncio.to_thread(
        _popen, ["Xvfb", display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"], {}, out
    )
    socket_path = Path(f"/tmp/.X11-unix/X{number}")

    async def exists() -> bool:
        return await asyncio.to_thread(socket_path.exists)

    await eventually(exists, timeout_s=30.0, what="the Xvfb socket")
    client = await asyncio.to_thread(
        _popen, xfreerdp_argv(host, port, username, password), {"DISPLAY": display}, out
    )
    handle = RdpClient(xvfb, client, display, log)
    try:
        yield handle
    finally:
        handle.stop()
        out.close()


def snapshot(display: str, xauthority: Path, out: Path) -> np.ndarray[Any, Any]:
    """One RGB frame of an X display, taken by the recorder's capture module."""
    subprocess.run(
        [sys.executable, "-m", "lucid.rdp.capture", "--display", display, "--snapshot", str(out)],
        env={**os.environ, "XAUTHORITY": str(xauthority)},
        check=True,
        timeout=60,
    )
    return np.load(out)  # type: ignore[no-any-return]


async def gather_segments(iterator: AsyncIterator[Any]) -> list[Any]:
    """Every item of an async iterator."""
    return [item async for item in iterator]


async def run_lucid(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m lucid ARGS`` against the servers of ``settings``."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "lucid", *args],
        env=process_environment(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
