"""The seed's phase-1 checkpoint (auth + storage), over real gRPC with mTLS and through the
Envoy edge: a fresh TRON key signs in (challenge → TIP-191 signature → tokens); as a plain
user the storage cluster refuses it; the operator makes it the first super admin; a
refresh (through the edge) carries the new role; the token stores a cache value and
reads it back over gRPC and over REST; a forged or broken token is refused and stores
nothing; reusing a spent refresh token ends the login session everywhere.

The system is fresh (its own database, so no super admin exists yet): auth and storage
run on ports of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tronpy.keys import PrivateKey

from lucid.admin.grantcli import grant
from lucid.auth import app as auth_app
from lucid.common.v1 import access_pb2
from lucid.runtime.config import Settings
from lucid.storage.v1 import cache_pb2, cache_pb2_grpc
from lucid.supervisor.localservers import free_port
from tests.auth_support import address_of, auth_client, claims, refused
from tests.support import Mesh, bearer, details, https_client, serve_edge, sign_token


@dataclass(frozen=True)
class System:
    """A fresh auth + storage behind the edge."""

    mesh: Mesh
    edge_url: str


@pytest.fixture(scope="module")
async def system(settings: Settings) -> AsyncIterator[System]:
    own = settings.replace(
        ports={**settings.ports, "auth": free_port(), "storage": free_port()},
        mongodb_db=f"lucid_phase1_{uuid.uuid4().hex[:8]}",
    )
    mesh = Mesh(own)
    try:
        await mesh.start("auth")
        await mesh.start("storage")
        async with serve_edge(own) as url:
            yield System(mesh, url)
    finally:
        redis = (
            mesh.servers["storage"].runtime.datastores.cache if "storage" in mesh.servers else None
        )
        if redis is not None:
            keys = [k async for k in redis.scan_iter(match="lucid:storage:phase1:*")]
            if keys:
                await redis.unlink(*keys)
        await mesh.stop_all()


async def _cache_error(mesh: Mesh, token: str, key: str) -> grpc.aio.AioRpcError:
    """The refusal of a SetCacheKey with ``token``."""
    async with mesh.channel("storage") as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        return await refused(
            stub.SetCacheKey(
                cache_pb2.SetCacheKeyRequest(key=key, value="nope"), metadata=bearer(token)
            )
        )


async def test_phase1_checkpoint(system: System) -> None:
    mesh, edge = system.mesh, system.edge_url
    redis = mesh.servers["storage"].runtime.datastores.cache
    run = uuid.uuid4().hex[:8]
    key = PrivateKey.random()
    address = address_of(key)
    client = auth_client(mesh.settings)
    try:
        login = await client.login(key)  # challenge → TIP-191 signature → tokens
    finally:
        await client.channel.close()
    assert login.user.tron_address == address
    first = login.tokens
    assert claims(first.access_token)["role"] == "user"

    # A plain user may not touch the cache: refused, nothing written.
    denied_key = f"lucid:storage:phase1:{run}:denied"
    error = await _cache_error(mesh, first.access_token, denied_key)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(error).reason == "LUCID_ERR_2004"
    assert not await redis.exists(denied_key)

    # The operator bootstraps the first super admin (`lucid admin grant`).
    status, text = await grant(mesh.settings, address, "super_admin")
    assert status == 0, text

    async with https_client(mesh.settings) as http:
        # The refresh goes through the edge; the new pair carries the granted role.
        async with http.post(
            f"{edge}/api/v1/auth/refresh", json={"refresh_token": first.refresh_token}
        ) as response:
            assert response.status == 200, await response.text()
            tokens = (await response.json())["tokens"]
        access = tokens["access_token"]
        assert access != first.access_token and tokens["refresh_token"] != first.refresh_token
        assert claims(access)["role"] == "super_admin"
        assert claims(access)["sid"] == first.session_id == tokens["session_id"]
        assert claims(access)["sub"] == login.user.user_id

        # Over gRPC: store a value and read it back.
        grpc_key = f"lucid:storage:phase1:{run}:grpc"
        async with mesh.channel("storage") as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            written = await stub.SetCacheKey(
                cache_pb2.SetCacheKeyRequest(key=grpc_key, value="over grpc", ttl_seconds=600),
                metadata=bearer(access),
            )
            assert written.success and uuid.UUID(written.operation_id).version == 4
            got = await stub.GetCacheKey(
                cache_pb2.GetCacheKeyRequest(key=grpc_key), metadata=bearer(access)
            )
        assert (got.key, got.value, got.type) == (
            grpc_key,
            "over grpc",
            cache_pb2.CACHE_KEY_TYPE_STRING,
        )
        assert 0 < got.ttl_seconds <= 600
        assert await redis.get(grpc_key) in {"over grpc", b"over grpc"}

        # Through the edge (REST): store another, read both back.
        headers = {"authorization": f"Bearer {access}"}
        rest_key = f"lucid:storage:phase1:{run}:rest"
        async with http.put(
            f"{edge}/api/v1/cache/keys/{rest_key}", json={"value": "over rest"}, headers=headers
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["success"] is True
        for stored, value in ((rest_key, "over rest"), (grpc_key, "over grpc")):
            async with http.get(f"{edge}/api/v1/cache/keys/{stored}", headers=headers) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            assert (body["key"], body["value"]) == (stored, value)
        async with http.get(f"{edge}/api/v1/cache/keys/{rest_key}") as response:
            assert response.status == 401  # no token
            assert (await response.json())["error"]["code"] == "LUCID_ERR_2001"

        # Bad tokens: forged by another key under auth's kid, broken, unsigned role claim.
        current = await auth_app.key_store(mesh.servers["auth"].runtime).current()
        forged = sign_token(
            Ed25519PrivateKey.generate(),
            current.kid,
            role=access_pb2.ROLE_SUPER_ADMIN,
            user_id=login.user.user_id,
        )
        bad_key = f"lucid:storage:phase1:{run}:bad"
        for bad in (forged, "not-a-jwt", access[:-4] + "AAAA"):
            error = await _cache_error(mesh, bad, bad_key)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, bad
            assert details(error).reason == "LUCID_ERR_2003", (bad, details(error))
            async with http.put(
                f"{edge}/api/v1/cache/keys/{bad_key}",
                json={"value": "nope"},
                headers={"authorization": f"Bearer {bad}"},
            ) as response:
                assert response.status == 401
                envelope = (await response.json())["error"]
            # The edge's own JWT check refuses it before any cluster sees it.
            assert envelope["code"] == "LUCID_ERR_2001", envelope
            assert envelope["details"]["reason"].startswith("jwt_authn_access_denied"), envelope
            assert envelope["request_id"]
        assert not await redis.exists(bad_key)

        # The spent refresh token again: reuse ends the login session, and its access
        # token is refused from then on, over gRPC and through the edge.
        async with http.post(
            f"{edge}/api/v1/auth/refresh", json={"refresh_token": first.refresh_token}
        ) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "LUCID_ERR_2010"
        error = await _cache_error(mesh, access, bad_key)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert details(error).reason == "LUCID_ERR_2008"
        async with http.get(f"{edge}/api/v1/cache/keys/{rest_key}", headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "LUCID_ERR_2008"
        assert not await redis.exists(bad_key)
