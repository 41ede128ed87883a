"""TRON sign-in over real gRPC with real FerretDB and Redis: spec 09 §7 checks 1 to 4 and 6,
registration, the client address, and the audit of every attempt."""

from __future__ import annotations

import os
import uuid
from datetime import datetime

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lucid.auth.v1 import auth_pb2
from tronpy.keys import PrivateKey

from lucid.lib import tron
from lucid.lib.ids import is_uuid4
from tests.auth_support import (
    AuthClient,
    address_of,
    auth_client,
    auth_db,
    auth_redis,
    claims,
    fresh_ip,
    refused,
    sign,
)
from tests.support import Mesh, details


@pytest.fixture
async def client(mesh: Mesh) -> AuthClient:
    return auth_client(mesh.settings)


async def _nothing_issued(mesh: Mesh, address: str) -> None:
    """No user was created for the address, so no session or token can exist."""
    assert await auth_db(mesh).users.find_one({"tron_address": address}) is None


async def test_check1_valid_login_issues_15_minute_access_and_7_day_refresh(
    client: AuthClient, mesh: Mesh
) -> None:
    key = PrivateKey.random()
    reply = await client.login(key)
    access, refresh = claims(reply.tokens.access_token), claims(reply.tokens.refresh_token)
    assert access["exp"] - access["iat"] == 900
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600
    assert access["token_type"] == "access" and refresh["token_type"] == "refresh"
    assert access["sid"] == refresh["sid"] == reply.tokens.session_id
    assert reply.tokens.expires_in == 900 and reply.tokens.token_type == "Bearer"
    # the first login created the user: UUIDv4, role user, KYC none
    user = await auth_db(mesh).users.find_one({"tron_address": address_of(key)})
    assert user is not None and is_uuid4(user["_id"])
    assert (user["role"], user["kyc_status"]) == ("user", "none")
    assert access["sub"] == user["_id"] == reply.user.user_id
    assert reply.user.tron_address == address_of(key)


async def test_signature_forms_tronweb_v_and_0x_prefix_are_accepted(client: AuthClient) -> None:
    key = PrivateKey.random()
    for form in ("tronweb", "0x"):
        issued = await client.challenge(address_of(key))
        signature = key.sign_msg(issued.message.encode())
        text = signature.tronweb_hex() if form == "tronweb" else "0x" + signature.hex()
        reply = await client.login_with(address_of(key), issued.message, text)
        assert reply.tokens.access_token, form


async def test_challenge_message_has_the_spec_format(client: AuthClient, mesh: Mesh) -> None:
    key = PrivateKey.random()
    issued = await client.challenge(address_of(key))
    first, second = issued.message.split("\n")
    assert first.startswith("Sign this message to authenticate with Lucid: ")
    assert first.endswith("Z") and "T" in first.rsplit(": ", 1)[1]
    assert second == f"Nonce: {issued.nonce}" and len(issued.nonce) == 32
    int(issued.nonce, 16)
    ttl = await auth_redis(mesh).ttl(f"lucid:auth:challenge:{issued.nonce}")
    assert 290 <= ttl <= 300
    issued_at = datetime.strptime(first.rsplit(": ", 1)[1], "%Y-%m-%dT%H:%M:%SZ")
    lifetime = issued.expire_time.ToDatetime() - issued_at
    assert 300 <= lifetime.total_seconds() < 301


async def test_check2_another_keys_signature_is_refused_and_nothing_issued(
    client: AuthClient, mesh: Mesh
) -> None:
    victim, attacker = PrivateKey.random(), PrivateKey.random()
    issued = await client.challenge(address_of(victim))
    error = await refused(
        client.login_with(address_of(victim), issued.message, sign(attacker, issued.message))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(error).reason == "LUCID_ERR_2009"
    await _nothing_issued(mesh, address_of(victim))


async def test_check2_edited_message_is_refused(client: AuthClient, mesh: Mesh) -> None:
    key = PrivateKey.random()
    issued = await client.challenge(address_of(key))
    signature = sign(key, issued.message)
    edited = issued.message.replace("authenticate", "authorise")
    error = await refused(client.login_with(address_of(key), edited, signature))
    assert details(error).reason == "LUCID_ERR_2009"
    await _nothing_issued(mesh, address_of(key))


async def test_check2_message_signed_but_not_the_challenge_is_refused(
    client: AuthClient, mesh: Mesh
) -> None:
    """A message the key really signed, but not the one issued: the challenge check refuses."""
    key = PrivateKey.random()
    issued = await client.challenge(address_of(key))
    edited = issued.message.replace("Lucid", "Lucid!")
    error = await refused(client.login_with(address_of(key), edited, sign(key, edited)))
    assert details(error).reason == "LUCID_ERR_2011"
    await _nothing_issued(mesh, address_of(key))


async def test_check2_ed25519_signature_is_refused(client: AuthClient, mesh: Mesh) -> None:
    key = PrivateKey.random()
    issued = await client.challenge(address_of(key))
    ed = Ed25519PrivateKey.generate().sign(issued.message.encode()).hex()  # 64 bytes, 128 hex
    error = await refused(client.login_with(address_of(key), issued.message, ed))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error).field_violations[0].field == "signature"
    # padded to 65 bytes it is well-formed, and still not a signature of this key
    padded = ed + "1b"
    issued = await client.challenge(address_of(key))
    error = await refused(client.login_with(address_of(key), issued.message, padded))
    assert details(error).reason == "LUCID_ERR_2009"
    await _nothing_issued(mesh, address_of(key))


async def test_signature_with_a_foreign_v_is_refused(client: AuthClient) -> None:
    key = PrivateKey.random()
    issued = await client.challenge(address_of(key))
    raw = bytearray(key.sign_msg(issued.message.encode()).to_bytes())
    raw[64] = 37  # an EIP-155 style v: not TIP-191
    error = await refused(client.login_with(address_of(key), issued.message, raw.hex()))
    assert details(error).reason == "LUCID_ERR_2009"


async def test_check3_a_reused_nonce_is_refused(client: AuthClient) -> None:
    key = PrivateKey.random()
    issued = await client.challenge(address_of(key))
    signature = sign(key, issued.message)
    await client.login_with(address_of(key), issued.message, signature)
    error = await refused(client.login_with(address_of(key), issued.message, signature))
    assert details(error).reason == "LUCID_ERR_2011"


async def test_a_challenge_is_bound_to_its_address(client: AuthClient, mesh: Mesh) -> None:
    alice, mallory = PrivateKey.random(), PrivateKey.random()
    issued = await client.challenge(address_of(alice))
    error = await refused(
        client.login_with(address_of(mallory), issued.message, sign(mallory, issued.message))
    )
    assert details(error).reason == "LUCID_ERR_2011"
    await _nothing_issued(mesh, address_of(mallory))


async def test_a_message_without_a_known_nonce_is_refused(client: AuthClient) -> None:
    key = PrivateKey.random()
    forged = (
        f"Sign this message to authenticate with Lucid: 2020-01-01T00:00:00Z\nNonce: {'ab' * 16}"
    )
    error = await refused(client.login_with(address_of(key), forged, sign(key, forged)))
    assert details(error).reason == "LUCID_ERR_2011"


def _address_with_prefix(prefix: int) -> str:
    """A Base58Check address of another network that still looks like T + 33 characters."""
    while True:
        candidate = tron.b58check_encode(bytes([prefix]) + os.urandom(20))
        if candidate.startswith("T") and len(candidate) == 34:
            return candidate


async def test_check4_bad_addresses_are_invalid_argument(client: AuthClient, mesh: Mesh) -> None:
    good = address_of(PrivateKey.random())
    flipped = good[:-1] + ("a" if good[-1] != "a" else "b")
    other_prefix = _address_with_prefix(0x40)
    short = good[:-1]
    for bad, reason in (
        (flipped, "LUCID_ERR_1006"),  # checksum
        (other_prefix, "LUCID_ERR_1006"),  # prefix
        (short, "LUCID_ERR_1001"),  # length (the field rule)
        ("0" + good[1:], "LUCID_ERR_1001"),  # alphabet
    ):
        error = await refused(client.challenge(bad))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert details(error).reason == reason, bad
        assert details(error).field_violations[0].field == "tron_address"
        error = await refused(client.login_with(bad, "x" * 40, "00" * 65))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    event = await auth_db(mesh).auth_audit_events.find_one(
        {"tron_address": other_prefix, "action": "challenge"}
    )
    assert event is not None and event["result"] == "failure"
    assert event["reason"] == "LUCID_ERR_1006"


async def test_check6_eleventh_login_from_one_ip_within_a_minute_is_rate_limited(
    mesh: Mesh,
) -> None:
    client = auth_client(mesh.settings)
    for _ in range(10):
        await client.login(PrivateKey.random())
    error = await refused(client.login(PrivateKey.random()))
    info = details(error)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.reason == "LUCID_ERR_3001"
    assert info.retry_after_s is not None and 0 < info.retry_after_s <= 60
    assert info.metadata["limit"] == "10"
    # another client address is not affected
    other = AuthClient(client.channel, fresh_ip())
    assert (await other.login(PrivateKey.random())).tokens.access_token


async def test_forwarded_address_is_believed_only_from_the_edge(mesh: Mesh) -> None:
    spoofed = fresh_ip()
    key = PrivateKey.random()
    async with mesh.channel("auth") as channel:  # the operator identity, not the edge
        await AuthClient(channel, spoofed).login(key)
    edge_client = auth_client(mesh.settings)
    await edge_client.login(key)
    events = [
        e
        async for e in auth_db(mesh).auth_audit_events.find(
            {"tron_address": address_of(key), "action": "login"}
        )
    ]
    ips = {e["ip_address"] for e in events}
    assert spoofed not in ips
    assert ips == {"127.0.0.1", edge_client.ip}


async def test_every_attempt_is_audited_without_secrets(client: AuthClient, mesh: Mesh) -> None:
    key = PrivateKey.random()
    issued = await client.challenge(address_of(key))
    bad_signature = sign(PrivateKey.random(), issued.message)
    await refused(client.login_with(address_of(key), issued.message, bad_signature))
    reply = await client.login(key)
    events = [
        e async for e in auth_db(mesh).auth_audit_events.find({"tron_address": address_of(key)})
    ]
    results = sorted((e["action"], e["result"], e.get("reason", "")) for e in events)
    assert results == [
        ("challenge", "success", ""),
        ("challenge", "success", ""),
        ("login", "failure", "LUCID_ERR_2009"),
        ("login", "success", ""),
    ]
    success = next(e for e in events if e["action"] == "login" and e["result"] == "success")
    assert success["user_id"] == reply.user.user_id
    assert success["session_id"] == reply.tokens.session_id
    assert success["ip_address"] == client.ip and success["user_agent"]
    secrets = {bad_signature, reply.tokens.access_token, reply.tokens.refresh_token}
    for event in events:
        for value in event.values():
            assert not any(s in str(value) for s in secrets)


async def test_register_creates_the_user_without_tokens(client: AuthClient, mesh: Mesh) -> None:
    key = PrivateKey.random()
    name = f"reg_{uuid.uuid4().hex[:8]}"
    email = f"{name}@example.org"

    async def register(
        signer: PrivateKey, username: str = "", mail: str = ""
    ) -> auth_pb2.RegisterResponse:
        issued = await client.challenge(address_of(signer))
        return await client.stub.Register(
            auth_pb2.RegisterRequest(
                challenge=auth_pb2.SignedChallenge(
                    tron_address=address_of(signer),
                    message=issued.message,
                    signature=sign(signer, issued.message),
                ),
                email=mail,
                username=username,
            ),
            metadata=client.md(),
        )

    reply = await register(key, name, email.upper())
    assert reply.user.username == name and reply.user.email == email
    assert await auth_db(mesh).auth_sessions.count_documents({"user_id": reply.user.user_id}) == 0
    error = await refused(register(key))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    # the e-mail is taken for another address
    other = PrivateKey.random()
    error = await refused(register(other, mail=email))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details(error).field_violations[0].field == "email"
    await _nothing_issued(mesh, address_of(other))
    # the registered user signs in to the same account
    assert (await client.login(key)).user.user_id == reply.user.user_id
