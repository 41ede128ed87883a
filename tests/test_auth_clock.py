"""What the spec's times decide, with an auth server whose clock the test moves:
the lockout (check 5), challenge expiry (check 3), token expiry (check 8) and
magic-link expiry (check 15)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pyotp
import pytest
from lucid.auth.v1 import auth_pb2
from tronpy.keys import PrivateKey

from lucid.lib.clock import FakeClock
from tests.auth_support import (
    AuthClient,
    ClockedAuth,
    address_of,
    auth_client,
    clocked_auth,
    refused,
    sign,
)
from tests.support import Mesh, details


@pytest.fixture
async def clocked(mesh: Mesh) -> AsyncIterator[tuple[ClockedAuth, FakeClock, AuthClient]]:
    clock = FakeClock()
    async with clocked_auth(mesh.settings, clock) as auth:
        client = auth_client(auth.settings)
        yield auth, clock, client
        await client.channel.close()


async def test_check5_five_failures_lock_the_account_for_30_minutes(
    clocked: tuple[ClockedAuth, FakeClock, AuthClient],
) -> None:
    _, clock, client = clocked
    key, impostor = PrivateKey.random(), PrivateKey.random()
    await client.login(key)  # the user exists
    for _ in range(5):
        issued = await client.challenge(address_of(key))
        error = await refused(
            client.login_with(address_of(key), issued.message, sign(impostor, issued.message))
        )
        assert details(error).reason == "LUCID_ERR_2009"
        clock.advance(13)  # keep under the per-IP login limit of the fake minute
    error = await refused(client.login(key))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(error).reason == "LUCID_ERR_2005"
    clock.advance(29 * 60)
    assert details(await refused(client.login(key))).reason == "LUCID_ERR_2005"
    clock.advance(61)
    reply = await client.login(key)
    assert reply.user.status == auth_pb2.ACCOUNT_STATUS_ACTIVE


async def test_check3_a_challenge_older_than_300_s_is_refused(
    clocked: tuple[ClockedAuth, FakeClock, AuthClient],
) -> None:
    _, clock, client = clocked
    key = PrivateKey.random()
    issued = await client.challenge(address_of(key))
    clock.advance(301)
    error = await refused(
        client.login_with(address_of(key), issued.message, sign(key, issued.message))
    )
    assert details(error).reason == "LUCID_ERR_2011"
    issued = await client.challenge(address_of(key))
    clock.advance(299)
    reply = await client.login_with(address_of(key), issued.message, sign(key, issued.message))
    assert reply.tokens.access_token


async def test_check8_an_expired_token_is_refused_with_2002(
    clocked: tuple[ClockedAuth, FakeClock, AuthClient],
) -> None:
    _, clock, client = clocked
    reply = await client.login(PrivateKey.random())
    access = reply.tokens.access_token
    clock.advance(14 * 60)
    await client.stub.GetAuthStatus(auth_pb2.GetAuthStatusRequest(), metadata=client.md(access))
    clock.advance(2 * 60)
    error = await refused(
        client.stub.GetAuthStatus(auth_pb2.GetAuthStatusRequest(), metadata=client.md(access))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(error).reason == "LUCID_ERR_2002"
    # the refresh token still works for 7 days, then expires too
    fresh = await client.stub.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=reply.tokens.refresh_token),
        metadata=client.md(),
    )
    clock.advance(7 * 24 * 3600 + 60)
    error = await refused(
        client.stub.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=fresh.tokens.refresh_token),
            metadata=client.md(),
        )
    )
    assert details(error).reason == "LUCID_ERR_2002"


async def _totp_user(client: AuthClient, email: str) -> tuple[auth_pb2.LoginResponse, str]:
    reply = await client.login(PrivateKey.random())
    enrolled = await client.stub.EnrollTotp(
        auth_pb2.EnrollTotpRequest(email=email), metadata=client.md(reply.tokens.access_token)
    )
    return reply, enrolled.secret


async def test_check15_a_magic_link_older_than_5_minutes_is_refused(
    clocked: tuple[ClockedAuth, FakeClock, AuthClient], mesh: Mesh
) -> None:
    auth, clock, client = clocked
    email = f"late-{address_of(PrivateKey.random()).lower()}@example.org"
    _, secret = await _totp_user(client, email)
    await client.stub.StartMagicLink(
        auth_pb2.StartMagicLinkRequest(email=email), metadata=client.md()
    )
    outbox = auth.server.runtime.datastores.db.auth_outbox
    message = await outbox.find_one({"to": email}, sort=[("created_at", -1)])
    clock.advance(301)
    code = pyotp.TOTP(secret).at(clock.timestamp())
    error = await refused(
        client.stub.VerifyTotp(
            auth_pb2.VerifyTotpRequest(email=email, link_token=message["link_token"], code=code),
            metadata=client.md(),
        )
    )
    assert details(error).reason == "LUCID_ERR_2006"
