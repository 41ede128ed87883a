"""The seed's phase-1 checkpoint, end to end: sign in with a fresh TRON key, the user is in
MongoDB, the login session in Redis, a protected rpc of another cluster accepts the
token, and after logout it refuses it. Once over gRPC, once through the REST edge."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from tronpy.keys import PrivateKey

from lucid.auth.v1 import auth_pb2
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc
from tests.auth_support import address_of, auth_client, sign
from tests.support import Mesh, bearer, details, https_client, serve_edge


async def _protected_call(mesh: Mesh, token: str) -> grpc.aio.AioRpcError | None:
    """GetSession of the sessions cluster (needs view_own_sessions) with a token."""
    async with mesh.channel("sessions") as channel:
        try:
            await sessions_pb2_grpc.SessionServiceStub(channel).GetSession(
                sessions_pb2.GetSessionRequest(session_id=str(uuid.uuid4())),
                metadata=bearer(token),
            )
        except grpc.aio.AioRpcError as error:
            return error
    return None


def _accepted(error: grpc.aio.AioRpcError | None) -> bool:
    """Past authentication and authorization: OK, or a failure that is not an auth one
    (UNIMPLEMENTED while sessions is not built, NOT_FOUND once it is)."""
    return error is None or (
        error.code() not in {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
        and not details(error).reason.startswith("LUCID_ERR_2")
    )


async def test_phase1_checkpoint_over_grpc(mesh: Mesh) -> None:
    await mesh.start("sessions")
    db = mesh.servers["auth"].runtime.datastores.db
    redis = mesh.servers["auth"].runtime.datastores.cache
    key = PrivateKey.random()
    client = auth_client(mesh.settings)

    reply = await client.login(key)

    user = await db.users.find_one({"tron_address": address_of(key)})
    assert user is not None and user["_id"] == reply.user.user_id
    assert await redis.exists(f"lucid:auth:session:{reply.tokens.session_id}")
    error = await _protected_call(mesh, reply.tokens.access_token)
    assert _accepted(error), error

    await client.stub.Logout(
        auth_pb2.LogoutRequest(), metadata=client.md(reply.tokens.access_token)
    )

    error = await _protected_call(mesh, reply.tokens.access_token)
    assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(error).reason == "LUCID_ERR_2008"
    assert details(error).domain == "lucid.sessions"
    assert not await redis.exists(f"lucid:auth:session:{reply.tokens.session_id}")


@pytest.fixture(scope="module")
async def edge_url(mesh: Mesh) -> AsyncIterator[str]:
    await mesh.start("sessions")
    async with serve_edge(mesh.settings) as url:
        yield url


async def test_phase1_checkpoint_through_the_rest_edge(edge_url: str, mesh: Mesh) -> None:
    key = PrivateKey.random()
    address = address_of(key)
    async with https_client(mesh.settings) as http:
        async with http.post(
            f"{edge_url}/api/v1/auth/challenge", json={"tron_address": address}
        ) as response:
            assert response.status == 200
            challenge = await response.json()
        assert challenge["message"].endswith(challenge["nonce"])
        async with http.post(
            f"{edge_url}/api/v1/auth/login",
            json={
                "tron_address": address,
                "message": challenge["message"],
                "signature": "0x" + sign(key, challenge["message"]),
            },
            headers={
                "user-agent": "checkpoint-test/1.0",
                # a client cannot name its own address: Envoy sets these itself
                "x-forwarded-for": "203.0.113.9",
                "x-envoy-external-address": "203.0.113.9",
            },
        ) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        tokens = body["tokens"]
        assert body["user"]["tron_address"] == address
        assert tokens["token_type"] == "Bearer" and int(tokens["expires_in"]) == 900
        headers = {"authorization": f"Bearer {tokens['access_token']}"}

        async with http.get(f"{edge_url}/api/v1/auth/status", headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["user"]["user_id"] == body["user"]["user_id"]
        assert _accepted(await _protected_call(mesh, tokens["access_token"]))

        async with http.post(
            f"{edge_url}/api/v1/auth/logout", json={}, headers=headers
        ) as response:
            assert response.status == 200

        async with http.get(f"{edge_url}/api/v1/auth/status", headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "LUCID_ERR_2008"
        async with http.get(
            f"{edge_url}/api/v1/sessions/{uuid.uuid4()}", headers=headers
        ) as response:
            assert response.status == 401
            error = (await response.json())["error"]
            assert (error["code"], error["service"]) == ("LUCID_ERR_2008", "sessions")

        # a refused REST login: another key's signature
        async with http.post(
            f"{edge_url}/api/v1/auth/challenge", json={"tron_address": address}
        ) as response:
            challenge = await response.json()
        async with http.post(
            f"{edge_url}/api/v1/auth/login",
            json={
                "tron_address": address,
                "message": challenge["message"],
                "signature": sign(PrivateKey.random(), challenge["message"]),
            },
        ) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "LUCID_ERR_2009"

    db = mesh.servers["auth"].runtime.datastores.db
    login = await db.auth_audit_events.find_one(
        {"tron_address": address, "action": "login", "result": "success"}
    )
    assert login["ip_address"] == "127.0.0.1" and login["peer"] == "edge"
    assert login["user_agent"].startswith("checkpoint-test/1.0")
