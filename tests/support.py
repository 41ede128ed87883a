"""Test support: a real mesh in the test process, real stores, real tokens.

Servers are the production ``ClusterServer`` on free loopback ports with mTLS
certificates from a CA made for the test session; MongoDB is FerretDB and Redis
is redis-server (started by ``make test``, or privately when pytest runs alone).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lucid.auth import app as auth_app
from lucid.common.v1 import access_pb2
from lucid.runtime import tls
from lucid.runtime.config import CLUSTERS, Settings
from lucid.runtime.errors import ErrorDetails
from lucid.runtime.server import ClusterApp, ClusterBuilder, ClusterServer, Runtime
from lucid.runtime.tokens import (
    ACCESS,
    ALGORITHM,
    AUDIENCE,
    ISSUER,
    CallbackKeySource,
    kyc_claim,
    role_claim,
)
from lucid.supervisor.localservers import free_port


def session_settings(var_dir: Path, env: Mapping[str, str]) -> Settings:
    """Settings for one test session: free ports, a fresh database, fast probes."""
    ports = {cluster: free_port() for cluster in CLUSTERS}
    return Settings(
        ports=ports,
        metrics_ports={cluster: 0 for cluster in CLUSTERS},  # /metrics on any free port
        metrics_sample_s=1.0,
        edge_port=free_port(),
        var_dir=var_dir,
        mongodb_uri=env["LUCID_MONGODB_URI"],
        mongodb_db=f"lucid_test_{uuid.uuid4().hex[:10]}",
        redis_url=env["LUCID_REDIS_URL"],
        key_passphrase="test-passphrase",
        health_interval_s=0.2,
        dependency_timeout_s=0.5,
        log_level="WARNING",
        # The in-process mesh runs one chain validator (it alone is 2/3 of 1) with
        # test-speed blocks; tests/test_chain_faults.py runs three as processes.
        validators=1,
        block_interval_s=0.2,
        leader_timeout_s=1.0,
    )


def builder_of(cluster: str) -> ClusterBuilder:
    """The production builder of a cluster."""
    module = importlib.import_module(f"lucid.{cluster}.app")
    return module.build  # type: ignore[no-any-return]


def operator_channel(
    settings: Settings, cluster: str, identity: str = "operator"
) -> grpc.aio.Channel:
    """An mTLS channel to a cluster's port, as ``identity``."""
    credentials = tls.channel_credentials(tls.CertPaths.of(settings.certs_dir, identity))
    return grpc.aio.secure_channel(
        f"{settings.host}:{settings.port(cluster)}",
        credentials,
        options=[("grpc.ssl_target_name_override", tls.dns_name(cluster))],
    )


@contextlib.asynccontextmanager
async def serve_edge(settings: Settings) -> AsyncIterator[str]:
    """The Envoy edge as a child process on a free loopback port; yields its URL (HTTPS
    with the test CA's ``edge-web`` certificate unless ``settings.edge_tls`` is off)."""
    from lucid.supervisor.envoy import running_edge

    async with running_edge(settings) as edge:
        yield edge.url


def storeless_app(**parts: Any) -> ClusterApp:
    """A ``ClusterApp`` without stores, schema or token keys (only ``grpc.health.v1``
    unless ``parts`` add servicers, tasks or hooks)."""

    async def no_keys() -> list:  # type: ignore[type-arg]
        return []

    return ClusterApp(
        **{
            "servicers": [],
            "requires_mongo": False,
            "requires_redis": False,
            "declare_schema": False,
            "key_source": CallbackKeySource(no_keys),
            **parts,
        }
    )


async def serve_health_only(settings: Settings, cluster: str) -> ClusterServer:
    """A stand-in server of ``cluster`` on its port that serves only ``grpc.health.v1``
    (SERVING, no stores): for tests that probe health, such as the chain validators'."""
    runtime = Runtime(settings, cluster)
    server = ClusterServer(runtime, storeless_app(), port=settings.port(cluster))
    await server.start()
    return server


def https_client(settings: Settings, local_ip: str | None = None) -> Any:
    """An aiohttp client trusting the test CA (optionally from another loopback address,
    so it is another client IP to the rate limiter)."""
    import ssl

    import aiohttp

    context = ssl.create_default_context(cafile=str(settings.certs_dir / "ca.crt"))
    connector = aiohttp.TCPConnector(ssl=context, local_addr=(local_ip, 0) if local_ip else None)
    return aiohttp.ClientSession(connector=connector)


def details(error: grpc.aio.AioRpcError) -> ErrorDetails:
    """The rich status of a failed call."""
    return ErrorDetails.from_rpc_error(error)


_SERVED: dict[int, str] = {}
"""Ports the meshes of this test process serve, and which cluster serves each."""


@dataclass
class Mesh:
    """Cluster servers running in the test process."""

    settings: Settings
    servers: dict[str, ClusterServer] = field(default_factory=dict)

    async def start(self, cluster: str, builder: ClusterBuilder | None = None) -> ClusterServer:
        """Starts a cluster on its port (its production builder unless given)."""
        if cluster in self.servers:
            return self.servers[cluster]
        port = self.settings.port(cluster)
        if port in _SERVED:
            raise AssertionError(
                f"{cluster}'s port {port} is already served by {_SERVED[port]} of another mesh"
                " in this test session: start it on a port of its own (free_port())"
            )
        runtime = Runtime(self.settings, cluster)
        app = await (builder or builder_of(cluster))(runtime)
        server = ClusterServer(runtime, app, port=port)
        await server.start()
        self.servers[cluster] = server
        _SERVED[port] = cluster
        return server

    async def stop(self, cluster: str) -> None:
        """Stops one cluster."""
        server = self.servers.pop(cluster, None)
        if server is not None:
            _SERVED.pop(self.settings.port(cluster), None)
            await server.stop(grace_s=0.5)

    async def stop_all(self) -> None:
        """Stops every cluster."""
        for cluster in list(self.servers):
            await self.stop(cluster)

    def channel(self, cluster: str, identity: str = "operator") -> grpc.aio.Channel:
        """An mTLS channel to a cluster."""
        return operator_channel(self.settings, cluster, identity)

    async def token(
        self,
        *,
        role: int = access_pb2.ROLE_USER,
        kyc: int = access_pb2.KYC_STATUS_NONE,
        user_id: str | None = None,
        ttl_s: int = 900,
    ) -> str:
        """A real access token signed by the auth cluster's current key."""
        runtime = self.servers["auth"].runtime
        key = await auth_app.key_store(runtime).current()
        return sign_token(
            key.private_key, key.kid, role=role, kyc=kyc, user_id=user_id, ttl_s=ttl_s
        )


def sign_token(
    private_key: Ed25519PrivateKey,
    kid: str,
    *,
    role: int = access_pb2.ROLE_USER,
    kyc: int = access_pb2.KYC_STATUS_NONE,
    user_id: str | None = None,
    ttl_s: int = 900,
    issued_at: float | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """An access token in Lucid's format, signed by any key (for forged-token tests)."""
    now = int(issued_at if issued_at is not None else time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id or str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "token_type": ACCESS,
        "role": role_claim(role),
        "kyc": kyc_claim(kyc),
        **(claims or {}),
    }
    return jwt.encode(payload, private_key, algorithm=ALGORITHM, headers={"kid": kid})


def unsigned_token(payload: Mapping[str, Any]) -> str:
    """A token with ``alg: none`` (no signature)."""
    import base64

    def part(data: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def bearer(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying a bearer token."""
    return (("authorization", f"Bearer {token}"),)
