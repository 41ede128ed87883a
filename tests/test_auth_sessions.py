"""Tokens and login sessions: spec 09 §7 checks 7 to 11, rotation reuse, logout of all
sessions, ValidateToken, GetAuthStatus, ListActiveSessions and signing-key rotation."""

from __future__ import annotations

import asyncio
import time

import grpc
import jwt
import pytest
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.common.v1 import access_pb2
from tronpy.keys import PrivateKey

from tests.auth_support import AuthClient, auth_client, auth_db, auth_redis, claims, refused
from tests.support import Mesh, details


@pytest.fixture
async def client(mesh: Mesh) -> AuthClient:
    return auth_client(mesh.settings)


async def _validate(mesh: Mesh, token: str) -> auth_pb2.ValidateTokenResponse:
    async with mesh.channel("auth", identity="gateway") as channel:
        return await auth_pb2_grpc.AuthServiceStub(channel).ValidateToken(
            auth_pb2.ValidateTokenRequest(token=token)
        )


async def _refresh(client: AuthClient, token: str) -> auth_pb2.RefreshTokenResponse:
    return await client.stub.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=token), metadata=client.md()
    )


async def test_the_login_session_is_in_mongo_and_redis(client: AuthClient, mesh: Mesh) -> None:
    reply = await client.login(PrivateKey.random())
    sid = reply.tokens.session_id
    record = await auth_db(mesh).auth_sessions.find_one({"_id": sid})
    assert record is not None and record["user_id"] == reply.user.user_id
    assert record["revoked"] is False and record["ip_address"] == client.ip
    assert len(record["refresh_token_hash"]) == 64  # only a SHA-256 of the token is kept
    assert reply.tokens.refresh_token not in str(record)
    ttl = await auth_redis(mesh).ttl(f"lucid:auth:session:{sid}")
    assert 7 * 24 * 3600 - 60 <= ttl <= 7 * 24 * 3600


async def test_check7_refresh_returns_a_new_pair_and_the_old_refresh_token_fails(
    client: AuthClient, mesh: Mesh
) -> None:
    reply = await client.login(PrivateKey.random())
    first = reply.tokens
    second = (await _refresh(client, first.refresh_token)).tokens
    assert second.session_id == first.session_id
    assert second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token
    assert claims(second.refresh_token)["jti"] != claims(first.refresh_token)["jti"]
    # the new access token works
    status = await client.stub.GetAuthStatus(
        auth_pb2.GetAuthStatusRequest(), metadata=client.md(second.access_token)
    )
    assert status.user.user_id == reply.user.user_id
    # the old refresh token fails, and its reuse revokes the whole login session
    error = await refused(_refresh(client, first.refresh_token))
    assert details(error).reason == "LUCID_ERR_2010"
    record = await auth_db(mesh).auth_sessions.find_one({"_id": first.session_id})
    assert record["revoked"] is True and record["revoke_reason"] == "refresh_token_reuse"
    error = await refused(_refresh(client, second.refresh_token))
    assert details(error).reason == "LUCID_ERR_2010"
    error = await refused(
        client.stub.GetAuthStatus(
            auth_pb2.GetAuthStatusRequest(), metadata=client.md(second.access_token)
        )
    )
    assert details(error).reason == "LUCID_ERR_2008"


async def test_check8_an_access_token_used_for_refresh_fails(client: AuthClient) -> None:
    reply = await client.login(PrivateKey.random())
    error = await refused(_refresh(client, reply.tokens.access_token))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(error).reason == "LUCID_ERR_2010"
    error = await refused(_refresh(client, "not-a-token"))
    assert details(error).reason == "LUCID_ERR_2010"


async def test_check9_after_logout_validate_token_fails(client: AuthClient, mesh: Mesh) -> None:
    reply = await client.login(PrivateKey.random())
    token = reply.tokens.access_token
    valid = await _validate(mesh, token)
    assert valid.valid and valid.user_id == reply.user.user_id
    assert valid.role == access_pb2.ROLE_USER
    assert access_pb2.PERMISSION_CREATE_SESSION in valid.permissions
    assert valid.jti == claims(token)["jti"]
    out = await client.stub.Logout(auth_pb2.LogoutRequest(), metadata=client.md(token))
    assert out.revoked_sessions == 1
    after = await _validate(mesh, token)
    assert not after.valid and after.reason == "LUCID_ERR_2008"
    # the jti is blacklisted for the token's remaining life, the session marked revoked
    jti = claims(token)["jti"]
    ttl = await auth_redis(mesh).ttl(f"lucid:auth:blacklist:{jti}")
    assert 0 < ttl <= 900 + 1
    record = await auth_db(mesh).auth_sessions.find_one({"_id": reply.tokens.session_id})
    assert record["revoked"] is True and record["revoked_at"] is not None
    # and its refresh token is dead too
    error = await refused(_refresh(client, reply.tokens.refresh_token))
    assert details(error).reason == "LUCID_ERR_2010"


async def test_logout_of_all_sessions(client: AuthClient, mesh: Mesh) -> None:
    key = PrivateKey.random()
    replies = [await client.login(key) for _ in range(3)]
    out = await client.stub.Logout(
        auth_pb2.LogoutRequest(logout_all_sessions=True),
        metadata=client.md(replies[0].tokens.access_token),
    )
    assert out.revoked_sessions == 3
    for reply in replies:
        assert not (await _validate(mesh, reply.tokens.access_token)).valid


async def test_check10_revoke_session_deletes_the_redis_key_and_marks_mongo(
    client: AuthClient, mesh: Mesh
) -> None:
    key = PrivateKey.random()
    keep = await client.login(key)
    drop = await client.login(key)
    sid = drop.tokens.session_id
    assert await auth_redis(mesh).exists(f"lucid:auth:session:{sid}")
    reply = await client.stub.RevokeSession(
        auth_pb2.RevokeSessionRequest(session_id=sid), metadata=client.md(keep.tokens.access_token)
    )
    assert reply.session.revoked and reply.session.session_id == sid
    assert not await auth_redis(mesh).exists(f"lucid:auth:session:{sid}")
    record = await auth_db(mesh).auth_sessions.find_one({"_id": sid})
    assert record["revoked"] is True
    assert not (await _validate(mesh, drop.tokens.access_token)).valid
    assert (await _validate(mesh, keep.tokens.access_token)).valid


async def test_revoke_session_of_someone_else_is_not_found(client: AuthClient) -> None:
    alice = await client.login(PrivateKey.random())
    bob = await client.login(PrivateKey.random())
    error = await refused(
        client.stub.RevokeSession(
            auth_pb2.RevokeSessionRequest(session_id=bob.tokens.session_id),
            metadata=client.md(alice.tokens.access_token),
        )
    )
    assert details(error).reason == "LUCID_ERR_4001"


async def test_check11_a_users_sixth_concurrent_session_is_rejected(
    client: AuthClient, mesh: Mesh
) -> None:
    key = PrivateKey.random()
    sessions = [await client.login(key) for _ in range(5)]
    error = await refused(client.login(key))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(error).reason == "LUCID_ERR_3005"
    user_id = sessions[0].user.user_id
    assert await auth_db(mesh).auth_sessions.count_documents({"user_id": user_id}) == 5
    # after signing out of one, a new one is allowed
    await client.stub.Logout(
        auth_pb2.LogoutRequest(), metadata=client.md(sessions[0].tokens.access_token)
    )
    assert (await client.login(key)).tokens.access_token


async def test_concurrent_sign_ins_never_pass_the_session_limit(mesh: Mesh) -> None:
    key = PrivateKey.random()
    clients = [auth_client(mesh.settings) for _ in range(8)]
    results = await asyncio.gather(*(c.login(key) for c in clients), return_exceptions=True)
    ok = [r for r in results if isinstance(r, auth_pb2.LoginResponse)]
    turned_away = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert 1 <= len(ok) <= 5
    assert all(details(e).reason == "LUCID_ERR_3005" for e in turned_away)
    user_id = ok[0].user.user_id
    active = await auth_db(mesh).auth_sessions.count_documents(
        {"user_id": user_id, "revoked": False}
    )
    assert active == len(ok)


async def test_list_active_sessions_pages_newest_first(client: AuthClient) -> None:
    key = PrivateKey.random()
    replies = [await client.login(key) for _ in range(3)]
    token = replies[-1].tokens.access_token
    page = await client.stub.ListActiveSessions(
        auth_pb2.ListActiveSessionsRequest(page_size=2), metadata=client.md(token)
    )
    assert page.total_size == 3 and len(page.sessions) == 2 and page.next_page_token
    rest = await client.stub.ListActiveSessions(
        auth_pb2.ListActiveSessionsRequest(page_size=2, page_token=page.next_page_token),
        metadata=client.md(token),
    )
    assert len(rest.sessions) == 1 and not rest.next_page_token
    listed = [s.session_id for s in [*page.sessions, *rest.sessions]]
    assert set(listed) == {r.tokens.session_id for r in replies}
    assert page.sessions[0].create_time.ToDatetime() >= page.sessions[1].create_time.ToDatetime()
    error = await refused(
        client.stub.ListActiveSessions(
            auth_pb2.ListActiveSessionsRequest(page_token="garbage"), metadata=client.md(token)
        )
    )
    assert details(error).reason == "LUCID_ERR_1005"


async def test_get_auth_status_names_the_user_and_token_expiry(client: AuthClient) -> None:
    reply = await client.login(PrivateKey.random())
    status = await client.stub.GetAuthStatus(
        auth_pb2.GetAuthStatusRequest(), metadata=client.md(reply.tokens.access_token)
    )
    assert status.authenticated and status.user.user_id == reply.user.user_id
    assert status.token_expire_time.ToSeconds() == claims(reply.tokens.access_token)["exp"]


async def test_validate_token_refuses_garbage_and_refresh_tokens(
    client: AuthClient, mesh: Mesh
) -> None:
    reply = await client.login(PrivateKey.random())
    for token, reason in (
        ("garbage", "LUCID_ERR_2003"),
        (reply.tokens.refresh_token, "LUCID_ERR_2003"),
    ):
        result = await _validate(mesh, token)
        assert not result.valid and result.reason == reason


async def test_key_rotation_keeps_old_tokens_valid(client: AuthClient, mesh: Mesh) -> None:
    old = await client.login(PrivateKey.random())
    admin = await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN)
    rotated = await client.stub.RotateSigningKey(
        auth_pb2.RotateSigningKeyRequest(), metadata=client.md(admin)
    )
    assert rotated.kid in rotated.active_kids and len(rotated.active_kids) >= 2
    # the old access and refresh tokens still work
    status = await client.stub.GetAuthStatus(
        auth_pb2.GetAuthStatusRequest(), metadata=client.md(old.tokens.access_token)
    )
    assert status.user.user_id == old.user.user_id
    refreshed = await _refresh(client, old.tokens.refresh_token)
    assert jwt.get_unverified_header(refreshed.tokens.access_token)["kid"] == rotated.kid
    assert jwt.get_unverified_header(old.tokens.access_token)["kid"] != rotated.kid
    # new tokens are signed with the new key and verify (servers fetch the new JWKS)
    deadline = time.monotonic() + 30
    while True:
        result = await _validate(mesh, refreshed.tokens.access_token)
        if result.valid or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert result.valid
