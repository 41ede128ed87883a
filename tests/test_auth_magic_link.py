"""Magic link + TOTP (spec 09 §7 check 15): single-use links stored hashed, RFC 6238 codes
within ±1 step, the outbox in place of e-mail."""

from __future__ import annotations

import hashlib
import time
import uuid

import grpc
import pyotp
import pytest
from lucid.auth.v1 import auth_pb2
from tronpy.keys import PrivateKey

from tests.auth_support import AuthClient, auth_client, auth_db, refused
from tests.support import Mesh, details


@pytest.fixture
async def client(mesh: Mesh) -> AuthClient:
    return auth_client(mesh.settings)


async def _enrolled(client: AuthClient) -> tuple[auth_pb2.LoginResponse, str, str]:
    email = f"totp-{uuid.uuid4().hex[:10]}@example.org"
    reply = await client.login(PrivateKey.random())
    enrolled = await client.stub.EnrollTotp(
        auth_pb2.EnrollTotpRequest(email=email), metadata=client.md(reply.tokens.access_token)
    )
    assert enrolled.provisioning_uri.startswith("otpauth://totp/")
    return reply, email, enrolled.secret


async def _link(client: AuthClient, mesh: Mesh, email: str) -> str:
    reply = await client.stub.StartMagicLink(
        auth_pb2.StartMagicLinkRequest(email=email), metadata=client.md()
    )
    assert reply.expires_in == 300
    message = await auth_db(mesh).auth_outbox.find_one({"to": email}, sort=[("created_at", -1)])
    assert message is not None and message["link_token"] in message["body"]
    return str(message["link_token"])


async def _verify(client: AuthClient, email: str, token: str, code: str):  # type: ignore[no-untyped-def]
    return await client.stub.VerifyTotp(
        auth_pb2.VerifyTotpRequest(email=email, link_token=token, code=code),
        metadata=client.md(),
    )


async def test_magic_link_and_totp_sign_in(client: AuthClient, mesh: Mesh) -> None:
    login, email, secret = await _enrolled(client)
    token = await _link(client, mesh, email)
    # the link is stored only as its SHA-256
    stored = await auth_db(mesh).auth_magic_links.find_one(
        {"_id": hashlib.sha256(token.encode()).hexdigest()}
    )
    assert stored is not None and token not in str(stored)
    reply = await _verify(client, email, token, pyotp.TOTP(secret).now())
    assert reply.user.user_id == login.user.user_id and reply.tokens.access_token
    assert reply.user.totp_enabled


async def test_check15_a_reused_link_is_refused(client: AuthClient, mesh: Mesh) -> None:
    _, email, secret = await _enrolled(client)
    token = await _link(client, mesh, email)
    await _verify(client, email, token, pyotp.TOTP(secret).now())
    error = await refused(_verify(client, email, token, pyotp.TOTP(secret).now()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(error).reason == "LUCID_ERR_2006"


async def test_check15_a_wrong_code_is_refused_and_spends_the_link(
    client: AuthClient, mesh: Mesh
) -> None:
    _, email, secret = await _enrolled(client)
    token = await _link(client, mesh, email)
    right = pyotp.TOTP(secret).now()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    error = await refused(_verify(client, email, token, wrong))
    assert details(error).reason == "LUCID_ERR_2007"
    error = await refused(_verify(client, email, token, right))
    assert details(error).reason == "LUCID_ERR_2006"


async def test_codes_of_the_neighbouring_steps_are_accepted_once(
    client: AuthClient, mesh: Mesh
) -> None:
    _, email, secret = await _enrolled(client)
    totp = pyotp.TOTP(secret)
    previous = totp.at(time.time() - 30)
    await _verify(client, email, await _link(client, mesh, email), previous)
    # the same step again (a replayed code) is refused even with a fresh link
    error = await refused(_verify(client, email, await _link(client, mesh, email), previous))
    assert details(error).reason == "LUCID_ERR_2007"
    too_old = totp.at(time.time() - 120)
    if too_old not in {totp.at(time.time() + d) for d in (-30, 0, 30)}:
        error = await refused(_verify(client, email, await _link(client, mesh, email), too_old))
        assert details(error).reason == "LUCID_ERR_2007"


async def test_a_link_for_another_email_or_an_unknown_email(client: AuthClient, mesh: Mesh) -> None:
    _, email, secret = await _enrolled(client)
    token = await _link(client, mesh, email)
    error = await refused(_verify(client, "someone@example.org", token, pyotp.TOTP(secret).now()))
    assert details(error).reason == "LUCID_ERR_2006"
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.org"
    reply = await client.stub.StartMagicLink(
        auth_pb2.StartMagicLinkRequest(email=unknown), metadata=client.md()
    )
    assert reply.expires_in == 300  # the same answer
    assert await auth_db(mesh).auth_outbox.count_documents({"to": unknown}) == 0


async def test_enrolling_an_email_of_another_user_is_refused(client: AuthClient) -> None:
    _, email, _ = await _enrolled(client)
    other = await client.login(PrivateKey.random())
    error = await refused(
        client.stub.EnrollTotp(
            auth_pb2.EnrollTotpRequest(email=email), metadata=client.md(other.tokens.access_token)
        )
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
