"""Helpers of the sessions tests: a private sessions server with a scripted chain (or
with three real validator processes), and short calls for the session life cycle."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.blockchain.v1 import anchoring_pb2, anchoring_pb2_grpc
from lucid.lib.trustanchor import TrustAnchor
from lucid.runtime.chaintrust import fetch_anchor
from lucid.runtime.config import Settings
from lucid.sessions import app as sessions_app
from lucid.sessions.config import SessionsConfig
from lucid.sessions.v1 import (
    chunks_pb2,
    chunks_pb2_grpc,
    manifests_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    trust_pb2_grpc,
)
from lucid.supervisor.localservers import free_port
from tests.chainfake import FakeAnchoring, fake_chain_builder
from tests.support import Mesh, bearer
from tests.waiting import eventually


@dataclass
class SessionsEnv:
    """A sessions server and its chain (scripted: ``fake``; else real validators) on
    their own ports."""

    mesh: Mesh
    main: Mesh
    fake: FakeAnchoring | None
    config: SessionsConfig
    channel: grpc.aio.Channel

    @property
    def chain_address(self) -> str:
        """The gRPC address of the chain (validator 0 for a real one)."""
        return f"{self.settings.host}:{self.settings.port('blockchain')}"

    async def trust_anchor(self) -> TrustAnchor:
        """The chain's trust anchor: the scripted chain's keys, or ``GetTrustAnchor``."""
        if self.fake is not None:
            return self.fake.trust_anchor()
        return await fetch_anchor(self.settings, self.chain_address)

    async def chain_anchoring(self, session_id: str) -> anchoring_pb2.SessionAnchoring:
        """The chain's record of a session's anchoring (asked as the sessions service)."""
        async with self.mesh.channel("blockchain", "sessions") as channel:
            reply = await anchoring_pb2_grpc.AnchoringServiceStub(channel).GetSessionAnchoring(
                anchoring_pb2.GetSessionAnchoringRequest(session_id=session_id), timeout=10
            )
        return reply.anchoring

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

        last: list[sessions_pb2.Session] = []

        async def reached() -> sessions_pb2.Session | None:
            last[:] = [await self.get(md, session_id)]
            return last[0] if last[0].state in states else None

        try:
            return await eventually(reached, timeout_s=timeout_s, what=f"session in {states}")
        except AssertionError:
            raise AssertionError(f"session stayed {last[0].state}: {last[0]}") from None


async def start_env(
    main: Mesh, settings: Settings, *, chain_port: int | None = None, **config: Any
) -> SessionsEnv:
    """Starts sessions and the scripted chain on new ports (auth is ``main``'s); with
    ``chain_port``, sessions uses the real chain there instead."""
    ports = {**settings.ports, "sessions": free_port(), "blockchain": chain_port or free_port()}
    own = settings.replace(ports=ports)
    mesh = Mesh(own)
    fake = None
    if chain_port is None:
        fake = FakeAnchoring()
        await mesh.start("blockchain", fake_chain_builder(fake))
    cfg = SessionsConfig.of(
        own,
        **{
            "blob_root": own.var_dir / f"blobs-{ports['sessions']}",
            "anchor_poll_s": 0.05,
            "anchor_recheck_s": 0.1,
            "anchor_retry_backoff_s": 0.05,
            "sweep_interval_s": 0.5,
            **config,
        },
    )
    build: Callable[..., Awaitable[Any]] = functools.partial(sessions_app.build, config=cfg)
    server = await mesh.start("sessions", build)
    await wait_serving(server)
    return SessionsEnv(mesh, main, fake, cfg, mesh.channel("sessions"))


async def wait_serving(server: Any, timeout_s: float = 30.0) -> None:
    """Waits until a server's dependencies answered and its startup work ran."""
    await eventually(lambda: server._ready, timeout_s=timeout_s, what="the server ready")


def process_environment(settings: Settings) -> dict[str, str]:
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
    """``python -m lucid serve sessions`` (or other ``args``) as a child process."""

    def __init__(
        self, settings: Settings, log: Path, args: Sequence[str] = ("serve", "sessions")
    ) -> None:
        self.settings = settings
        self.log = log
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = process_environment(self.settings)
        env["LUCID_EDGE_PORT"] = str(self.settings.edge_port)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lucid", *self.args],
                env=env,
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


async def retrying(make, attempts: int = 50):  # type: ignore[no-untyped-def]
    """Calls ``make()`` until it stops failing with UNAVAILABLE (a server that just started)."""
    for _ in range(attempts - 1):
        try:
            return await make()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.2)
    return await make()
