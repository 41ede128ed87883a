"""Helpers of the admin tests: the admin cluster (on a fake clock) next to a real
sessions server with a scripted chain and the rdp cluster, and short calls."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import grpc

from lucid.admin import app as admin_app
from lucid.admin.v1 import (
    audit_pb2_grpc,
    config_pb2_grpc,
    emergency_pb2_grpc,
    operations_pb2_grpc,
)
from lucid.common.v1 import access_pb2
from lucid.lib.clock import FakeClock
from lucid.runtime.config import Settings
from lucid.runtime.server import ClusterApp, Runtime
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from tests.sessionkit import SessionsEnv, start_env, wait_serving
from tests.support import Mesh, bearer


@dataclass
class AdminEnv:
    """Admin, sessions (scripted chain) and rdp on their own ports."""

    sessions: SessionsEnv
    clock: FakeClock
    channel: grpc.aio.Channel

    @property
    def emergency(self) -> emergency_pb2_grpc.EmergencyServiceStub:
        """EmergencyService."""
        return emergency_pb2_grpc.EmergencyServiceStub(self.channel)

    @property
    def sessions_admin(self) -> operations_pb2_grpc.AdminSessionServiceStub:
        """AdminSessionService."""
        return operations_pb2_grpc.AdminSessionServiceStub(self.channel)

    @property
    def config(self) -> config_pb2_grpc.ConfigServiceStub:
        """ConfigService."""
        return config_pb2_grpc.ConfigServiceStub(self.channel)

    @property
    def audit(self) -> audit_pb2_grpc.AuditServiceStub:
        """AuditService."""
        return audit_pb2_grpc.AuditServiceStub(self.channel)

    async def md(self, role: int, user_id: str | None = None) -> tuple[tuple[str, str]]:
        """Metadata with a token of ``role``."""
        return bearer(await self.sessions.main.token(role=role, user_id=user_id))

    async def super_admin(self) -> tuple[tuple[str, str]]:
        """A super admin's metadata."""
        return await self.md(access_pb2.ROLE_SUPER_ADMIN)

    async def close(self) -> None:
        """Re-enables creation at sessions (Redis is shared) and stops everything."""
        async with self.sessions.mesh.channel("sessions", "admin") as channel:
            await sessions_pb2_grpc.SessionServiceStub(channel).SetSessionCreationEnabled(
                sessions_pb2.SetSessionCreationEnabledRequest(enabled=True), timeout=10
            )
        await self.channel.close()
        await self.sessions.channel.close()
        await self.sessions.mesh.stop_all()


async def start_admin(main: Mesh, settings: Settings) -> AdminEnv:
    """Starts sessions + scripted chain, rdp and admin (admin on a fake clock)."""
    env = await start_env(main, settings)
    clock = FakeClock()

    async def build(runtime: Runtime) -> ClusterApp:
        return await admin_app.build(runtime, clock)

    await wait_serving(await env.mesh.start("admin", build))
    await env.mesh.start("rdp")
    return AdminEnv(env, clock, env.mesh.channel("admin"))


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error of a call that must fail."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded")
