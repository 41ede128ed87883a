"""Helpers of the auth tests: real TRON keys signing real challenges over real gRPC.

Calls go in as the edge (its mTLS identity) with a client address in
``x-forwarded-for``, as the front door sends them, so each test has its own client
address and the per-IP rate limits of one test do not touch another.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import jwt
import pytest
from tronpy.keys import PrivateKey

from lucid.auth.app import build
from lucid.auth.servicers.auth import AuthServicer
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.lib.clock import Clock
from lucid.runtime.config import Settings
from lucid.runtime.server import ClusterServer, Runtime
from lucid.supervisor.localservers import free_port
from tests.support import Mesh, operator_channel

_ips = itertools.count(1)


def fresh_ip() -> str:
    """A client address no other test uses (a label in metadata; nothing is sent to it)."""
    n = next(_ips) + uuid.uuid4().int % 50_000
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255 or 1}"


def address_of(key: PrivateKey) -> str:
    """The TRON address of a key."""
    return str(key.public_key.to_base58check_address())


def sign(key: PrivateKey, message: str) -> str:
    """A TIP-191 signature as hex (v 0/1)."""
    return str(key.sign_msg(message.encode()).hex())


async def refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def auth_db(mesh: Mesh) -> Any:
    """The database of the mesh's auth server."""
    return mesh.servers["auth"].runtime.datastores.db


def auth_redis(mesh: Mesh) -> Any:
    """The Redis client of the mesh's auth server."""
    return mesh.servers["auth"].runtime.datastores.cache


def claims(token: str) -> dict:
    """The claims of a token, unverified (the tests check them, the servers verify)."""
    return jwt.decode(token, options={"verify_signature": False})


@dataclass
class AuthClient:
    """A client of the auth cluster at one client address."""

    channel: grpc.aio.Channel
    ip: str = field(default_factory=fresh_ip)

    @property
    def stub(self) -> auth_pb2_grpc.AuthServiceStub:
        return auth_pb2_grpc.AuthServiceStub(self.channel)

    def md(self, token: str = "") -> tuple[tuple[str, str], ...]:
        """Metadata: the forwarded client address and a bearer token if given."""
        metadata: tuple[tuple[str, str], ...] = (("x-forwarded-for", self.ip),)
        if token:
            metadata += (("authorization", f"Bearer {token}"),)
        return metadata

    async def challenge(self, address: str) -> auth_pb2.IssueChallengeResponse:
        """A challenge for an address."""
        return await self.stub.IssueChallenge(
            auth_pb2.IssueChallengeRequest(tron_address=address), metadata=self.md()
        )

    async def login(
        self,
        key: PrivateKey,
        *,
        hardware_wallet: auth_pb2.HardwareWalletRef | None = None,
    ) -> auth_pb2.LoginResponse:
        """A full sign-in: challenge, TIP-191 signature, login."""
        address = address_of(key)
        issued = await self.challenge(address)
        return await self.stub.Login(
            auth_pb2.LoginRequest(
                tron_address=address,
                message=issued.message,
                signature=sign(key, issued.message),
                hardware_wallet=hardware_wallet,
            ),
            metadata=self.md(),
        )

    async def login_with(
        self, address: str, message: str, signature: str
    ) -> auth_pb2.LoginResponse:
        """A login with exactly these fields."""
        return await self.stub.Login(
            auth_pb2.LoginRequest(tron_address=address, message=message, signature=signature),
            metadata=self.md(),
        )


def auth_client(settings: Settings, ip: str | None = None) -> AuthClient:
    """A client (as the edge) of the auth port in ``settings``."""
    channel = operator_channel(settings, "auth", identity="edge")
    return AuthClient(channel, ip or fresh_ip())


@dataclass
class ClockedAuth:
    """An auth server of its own, on its own port, whose clock the test moves."""

    server: ClusterServer
    settings: Settings

    @property
    def servicer(self) -> AuthServicer:
        return next(s for _, s in self.server.app.servicers if isinstance(s, AuthServicer))


@asynccontextmanager
async def clocked_auth(settings: Settings, clock: Clock) -> AsyncIterator[ClockedAuth]:
    """Starts the production auth cluster with ``clock`` on a free port (same stores)."""
    own = settings.replace(ports={**settings.ports, "auth": free_port()})
    runtime = Runtime(own, "auth", clock=clock)
    server = ClusterServer(runtime, await build(runtime), port=own.port("auth"))
    await server.start()
    try:
        yield ClockedAuth(server, own)
    finally:
        await server.stop(grace_s=0.5)


def servicer_of(server: ClusterServer) -> AuthServicer:
    """The auth servicer of a running auth server."""
    return next(s for _, s in server.app.servicers if isinstance(s, AuthServicer))
