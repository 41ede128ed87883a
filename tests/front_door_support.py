"""A front door over the whole mesh for catalog-wide tests: all ten clusters in this
process (with a database of their own) behind the Envoy edge, fresh callers and fresh
client addresses (each its own rate-limit bucket), and ``DoorCalls``, which hypothesis'
worker thread uses to send requests on the servers' loop.

Tests use only ``url``, ``ca_file`` and the tokens, so the same tests can run against
Envoy once it is the edge; ``mesh`` is there for looking behind the door (stored state,
calls straight to a cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lucid.auth import app as auth_app
from lucid.common.v1 import access_pb2
from lucid.runtime.config import CLUSTERS, Settings
from lucid.supervisor.localservers import free_port
from tests.edge_probe import Caller, FrontDoorClient
from tests.support import Mesh, serve_edge, sign_token

T = TypeVar("T")

_addresses = itertools.count(1)
REQUESTS_PER_CLIENT = 60
"""Requests from one client address before the next (each address its own bucket)."""
ROLES = {
    "user": (access_pb2.ROLE_USER, access_pb2.KYC_STATUS_NONE),
    "admin": (access_pb2.ROLE_ADMIN, access_pb2.KYC_STATUS_VERIFIED),
}
"""The callers with a token: a plain user, and an admin with KYC done."""


@dataclass(frozen=True)
class FrontDoor:
    """A front door to probe: its URL, the CA of its certificate, and a way to get tokens."""

    url: str
    ca_file: Path
    mesh: Mesh
    signing_key: Ed25519PrivateKey
    kid: str
    """Auth's current signing key (read once: unsealing it is slow on purpose)."""

    def caller(self, name: str) -> Caller:
        """``anonymous``, or a ``user`` or ``admin`` with a fresh id (its own bucket)."""
        if name == "anonymous":
            return Caller(name)
        role, kyc = ROLES[name]
        user_id = str(uuid.uuid4())
        token = sign_token(self.signing_key, self.kid, role=role, kyc=kyc, user_id=user_id)
        return Caller(name, token, role, kyc, user_id)

    def client(self) -> FrontDoorClient:
        """A client from a loopback address of its own (its own per-IP bucket)."""
        n = next(_addresses) + uuid.uuid4().int % 20_000
        ip = f"127.{100 + (n >> 16) % 100}.{(n >> 8) & 255}.{(n & 255) or 1}"
        return FrontDoorClient(self.url, self.ca_file, local_ip=ip)


@contextlib.asynccontextmanager
async def full_front_door(settings: Settings, label: str) -> AsyncIterator[FrontDoor]:
    """All ten clusters (database ``lucid_<label>_…``) behind the Envoy edge."""
    own = settings.replace(
        ports={cluster: free_port() for cluster in CLUSTERS},
        mongodb_db=f"lucid_{label}_{uuid.uuid4().hex[:8]}",
    )
    mesh = Mesh(own)
    try:
        for cluster in ("auth", *(c for c in CLUSTERS if c != "auth")):
            await mesh.start(cluster)
        key = await auth_app.key_store(mesh.servers["auth"].runtime).current()
        async with serve_edge(own) as url:
            yield FrontDoor(url, own.certs_dir / "ca.crt", mesh, key.private_key, key.kid)
    finally:
        await mesh.stop_all()


@dataclass
class DoorCalls:
    """Requests to a front door from another thread (hypothesis' worker): they run on the
    servers' loop, from a client address that changes every ``REQUESTS_PER_CLIENT``."""

    door: FrontDoor
    loop: asyncio.AbstractEventLoop
    timeout_s: float = 60.0
    client: FrontDoorClient | None = None
    sent: int = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs a coroutine on the servers' loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=self.timeout_s)

    async def session(self) -> FrontDoorClient:
        """The current client; a new address every ``REQUESTS_PER_CLIENT`` requests."""
        if self.client is None or self.sent >= REQUESTS_PER_CLIENT:
            await self.close()
            self.client = self.door.client()
            self.sent = 0
        self.sent += 1
        return self.client

    async def close(self) -> None:
        """Closes the current client, if any."""
        if self.client is not None:
            await self.client.close()
            self.client = None
