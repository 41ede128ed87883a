"""Helpers of the admin tests: the admin cluster (on a fake clock) next to a real
sessions server with a scripted chain and the rdp cluster, and short calls."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pyotp
import pytest
from tronpy.keys import PrivateKey

from lucid.admin import app as admin_app
from lucid.admin.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2_grpc,
    config_pb2_grpc,
    emergency_pb2_grpc,
    operations_pb2_grpc,
)
from lucid.auth.v1 import auth_pb2
from lucid.common.v1 import access_pb2
from lucid.lib.clock import FakeClock
from lucid.rdp import app as rdp_app
from lucid.runtime.config import Settings
from lucid.runtime.server import ClusterApp, Runtime
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from lucid.supervisor.localservers import free_port
from tests.auth_support import auth_client
from tests.sessionkit import SessionsEnv, start_env, wait_serving
from tests.support import Mesh, bearer


@dataclass
class AdminEnv:
    """Admin, sessions (scripted chain) and rdp on their own ports."""

    sessions: SessionsEnv
    clock: FakeClock
    channel: grpc.aio.Channel
    _stepped: dict[int, tuple[tuple[str, str]]] = field(default_factory=dict)

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
        """A super admin's metadata, stepped up with TOTP."""
        return await self.stepped_up(access_pb2.ROLE_SUPER_ADMIN)

    async def admin_md(self) -> tuple[tuple[str, str]]:
        """An admin's metadata, stepped up with TOTP."""
        return await self.stepped_up(access_pb2.ROLE_ADMIN)

    async def stepped_up(self, role: int) -> tuple[tuple[str, str]]:
        """Metadata of a real user (signed in, TOTP enrolled) holding ``role``, who just
        stepped up (one user per role and module)."""
        if role not in self._stepped:
            user_id, secret = await self.totp_user()
            md = await self.md(role, user_id)
            await self.stub_auth.StepUp(
                admin_pb2.StepUpRequest(code=pyotp.TOTP(secret).now()), metadata=md
            )
            self._stepped[role] = md
        return self._stepped[role]

    async def totp_user(self) -> tuple[str, str]:
        """A new signed-in user enrolled in TOTP: its id and TOTP secret."""
        client = auth_client(self.sessions.main.settings)
        try:
            login = await client.login(PrivateKey.random())
            enrolled = await client.stub.EnrollTotp(
                auth_pb2.EnrollTotpRequest(email=f"{uuid.uuid4().hex[:12]}@example.com"),
                metadata=client.md(login.tokens.access_token),
            )
        finally:
            await client.channel.close()
        return login.user.user_id, enrolled.secret

    @property
    def stub_auth(self) -> admin_pb2_grpc.AdminAuthServiceStub:
        """AdminAuthService."""
        return admin_pb2_grpc.AdminAuthServiceStub(self.channel)

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
    # Admin and rdp on ports of their own too (the session's mesh may run its own).
    ports = {**settings.ports, "admin": free_port(), "rdp": free_port()}
    await main.start("mesh")  # the events the clusters publish (session-wide, like auth)
    env = await start_env(main, settings.replace(ports=ports))
    clock = FakeClock()

    async def build(runtime: Runtime) -> ClusterApp:
        return await admin_app.build(runtime, clock)

    await wait_serving(await env.mesh.start("admin", build))
    # rdp replays recordings against the scripted chain's trust anchor (it serves no
    # GetTrustAnchor), as tests/rdpkit.py wires it
    await env.mesh.start("rdp", functools.partial(rdp_app.build, anchor=env.trust_anchor))
    return AdminEnv(env, clock, env.mesh.channel("admin"))


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error of a call that must fail."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


def admin_fixture() -> Any:
    """A module-scoped ``admin`` fixture: an AdminEnv for the tests of one module."""

    @pytest.fixture(scope="module")
    async def admin(mesh: Mesh, settings: Settings) -> AsyncIterator[AdminEnv]:
        environment = await start_admin(mesh, settings)
        try:
            yield environment
        finally:
            await environment.close()

    return admin
