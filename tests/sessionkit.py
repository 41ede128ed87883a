"""Helpers of the sessions tests: a private sessions server with a scripted chain,
and short calls for the session life cycle."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from lucid.sessions.v1 import (
    chunks_pb2,
    chunks_pb2_grpc,
    manifests_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    trust_pb2_grpc,
)

from lucid.runtime.config import Settings
from lucid.sessions import app as sessions_app
from lucid.sessions.config import SessionsConfig
from lucid.supervisor.localservers import free_port
from tests.chainfake import FakeAnchoring, fake_chain_builder
from tests.support import Mesh, bearer


@dataclass
class SessionsEnv:
    """A sessions server and a scripted chain on their own ports."""

    mesh: Mesh
    main: Mesh
    fake: FakeAnchoring
    config: SessionsConfig
    channel: grpc.aio.Channel

    @property
    def settings(self) -> Settings:
        """The settings of this environment."""
        return self.mesh.settings

    @property
    def sessions(self) -> sessions_pb2_grpc.SessionServiceStub:
        """SessionService."""
        return sessions_pb2_grpc.SessionServiceStub(self.channel)

    @property
    def chunks(self) -> chunks_pb2_grpc.ChunkServiceStub:
        """ChunkService."""
        return chunks_pb2_grpc.ChunkServiceStub(self.channel)

    @property
    def manifests(self) -> manifests_pb2_grpc.ManifestServiceStub:
        """ManifestService."""
        return manifests_pb2_grpc.ManifestServiceStub(self.channel)

    @property
    def trust(self) -> trust_pb2_grpc.TrustPolicyServiceStub:
        """TrustPolicyService."""
        return trust_pb2_grpc.TrustPolicyServiceStub(self.channel)

    async def token(self, **kwargs: Any) -> tuple[tuple[str, str]]:
        """Call metadata with a fresh user's (or the given user's) token."""
        return bearer(await self.main.token(**kwargs))

    async def create(self, md: Any, **fields: Any) -> sessions_pb2.Session:
        """A new session."""
        fields.setdefault("name", "a session")
        response = await self.sessions.CreateSession(
            sessions_pb2.CreateSessionRequest(**fields), metadata=md
        )
        return response.session

    async def recording(self, md: Any, **fields: Any) -> str:
        """A new session, started; its id."""
        session = await self.create(md, **fields)
        await self.sessions.StartRecording(
            sessions_pb2.StartRecordingRequest(session_id=session.session_id), metadata=md
        )
        return session.session_id

    async def upload(self, md: Any, session_id: str, seq: int, data: bytes) -> chunks_pb2.Chunk:
        """UploadChunk."""
        response = await self.chunks.UploadChunk(
            chunks_pb2.UploadChunkRequest(session_id=session_id, sequence_number=seq, data=data),
            metadata=md,
        )
        return response.chunk

    async def get(self, md: Any, session_id: str) -> sessions_pb2.Session:
        """GetSession."""
        response = await self.sessions.GetSession(
            sessions_pb2.GetSessionRequest(session_id=session_id), metadata=md
        )
        return response.session

    async def wait_state(
        self, md: Any, session_id: str, states: set[int], timeout_s: float = 30.0
    ) -> sessions_pb2.Session:
        """Waits until the session reaches one of ``states``."""
        session = await self.get(md, session_id)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while session.state not in states:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"session stayed {session.state}: {session}")
            await asyncio.sleep(0.05)
            session = await self.get(md, session_id)
        return session


async def start_env(main: Mesh, settings: Settings, **config: Any) -> SessionsEnv:
    """Starts sessions and the scripted chain on new ports (auth is ``main``'s)."""
    ports = {**settings.ports, "sessions": free_port(), "blockchain": free_port()}
    own = settings.replace(ports=ports)
    mesh = Mesh(own)
    fake = FakeAnchoring()
    await mesh.start("blockchain", fake_chain_builder(fake))
    cfg = SessionsConfig.of(
        own,
        blob_root=own.var_dir / f"blobs-{ports['sessions']}",
        anchor_poll_s=0.05,
        anchor_retry_backoff_s=0.05,
        sweep_interval_s=0.5,
        **config,
    )
    build: Callable[..., Awaitable[Any]] = functools.partial(sessions_app.build, config=cfg)
    server = await mesh.start("sessions", build)
    await wait_serving(server)
    return SessionsEnv(mesh, main, fake, cfg, mesh.channel("sessions"))


async def wait_serving(server: Any, timeout_s: float = 30.0) -> None:
    """Waits until a server's dependencies answered and its startup work ran."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not server._ready:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the server never became ready")
        await asyncio.sleep(0.05)
