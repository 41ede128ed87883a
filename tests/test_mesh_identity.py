"""Service JWTs and certificate rotation of the mesh cluster over real mTLS gRPC and
MongoDB (spec 10 §4 PKI and service JWT, §7 check 8)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from typing import Any

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from lucid.common.v1 import access_pb2
from lucid.mesh import schema
from lucid.mesh.v1 import identity_pb2, identity_pb2_grpc
from tests.support import Mesh, bearer, details
from tests.waiting import eventually


@pytest.fixture(scope="module")
async def mesh10(mesh: Mesh) -> Mesh:
    await mesh.start("mesh")
    return mesh


def db(mesh: Mesh) -> Any:
    return mesh.servers["mesh"].runtime.datastores.db


def csr_for(name: str, key: Any = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def segments(token: str) -> list[dict[str, Any]]:
    def part(text: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return data

    head, body, _ = token.split(".")
    return [part(head), part(body)]


def encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- service tokens -----------------------------------------------------------------------


async def test_a_service_token_carries_its_cluster_plane_and_permissions(mesh10: Mesh) -> None:
    expected = {
        "sessions": (access_pb2.PLANE_OPS, ["service:read:sessions", "read:chain", "write:ops"]),
        "blockchain": (
            access_pb2.PLANE_CHAIN,
            ["service:read:blockchain", "write:chain", "read:storage"],
        ),
        "payments": (access_pb2.PLANE_WALLET, ["service:read:payments", "write:wallet"]),
    }
    for cluster, (plane, permissions) in expected.items():
        async with mesh10.channel("mesh", cluster) as channel:
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            issued = await stub.IssueServiceToken(identity_pb2.IssueServiceTokenRequest())
            again = await stub.IssueServiceToken(identity_pb2.IssueServiceTokenRequest())
            verified = await stub.VerifyServiceToken(
                identity_pb2.VerifyServiceTokenRequest(token=issued.token)
            )
        claims = issued.claims
        assert issued.token_type == "Bearer"
        assert claims.cluster == access_pb2.Cluster.Value(f"CLUSTER_{cluster.upper()}")
        assert (claims.service_name, claims.plane, list(claims.permissions)) == (
            cluster,
            plane,
            permissions,
        )
        assert (claims.issuer, claims.audience) == ("lucid.onion", "lucid-services")
        lifetime = claims.expire_time.ToSeconds() - claims.issue_time.ToSeconds()
        assert lifetime == 24 * 3600
        assert abs(claims.issue_time.ToSeconds() - time.time()) < 60
        assert claims.jti and claims.jti != again.claims.jti
        header, body = segments(issued.token)
        assert header["alg"] == "RS256" and header["kid"].startswith("service_token_signing-")
        assert (body["iss"], body["aud"], body["cluster"]) == (
            "lucid.onion",
            "lucid-services",
            cluster,
        )
        assert verified.valid and verified.failure == identity_pb2.VERIFY_FAILURE_UNSPECIFIED
        assert verified.claims == claims


async def test_audience_and_lifetime_are_the_callers_to_choose(mesh10: Mesh) -> None:
    async with mesh10.channel("mesh", "gateway") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        issued = await stub.IssueServiceToken(
            identity_pb2.IssueServiceTokenRequest(
                cluster=access_pb2.CLUSTER_GATEWAY, audience="lucid.storage", ttl_seconds=120
            )
        )
        assert issued.claims.expire_time.ToSeconds() - issued.claims.issue_time.ToSeconds() == 120
        right = await stub.VerifyServiceToken(
            identity_pb2.VerifyServiceTokenRequest(token=issued.token, audience="lucid.storage")
        )
        assert right.valid and right.claims.audience == "lucid.storage"
        default = await stub.VerifyServiceToken(
            identity_pb2.VerifyServiceTokenRequest(token=issued.token)
        )
        assert (default.valid, default.failure) == (
            False,
            identity_pb2.VERIFY_FAILURE_WRONG_AUDIENCE,
        )
        assert not default.HasField("claims")


async def test_forged_tampered_and_expired_tokens_do_not_verify(mesh10: Mesh) -> None:
    async with mesh10.channel("mesh", "gateway") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        short = await stub.IssueServiceToken(identity_pb2.IssueServiceTokenRequest(ttl_seconds=1))
        header, body = segments(short.token)
        head_b64, body_b64, signature = short.token.split(".")
        escalated = ".".join(
            [head_b64, encode({**body, "cluster": "payments", "plane": "wallet"}), signature]
        )
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        resigned = jwt.encode(body, other_key, algorithm="RS256", headers={"kid": header["kid"]})
        unknown_kid = jwt.encode(body, other_key, algorithm="RS256", headers={"kid": "nope"})
        symmetric = jwt.encode(body, "x" * 32, algorithm="HS256", headers={"kid": header["kid"]})
        unsigned = f"{encode({'alg': 'none', 'kid': header['kid']})}.{body_b64}."
        expectations = [
            (escalated, identity_pb2.VERIFY_FAILURE_UNTRUSTED),
            (resigned, identity_pb2.VERIFY_FAILURE_UNTRUSTED),
            (unknown_kid, identity_pb2.VERIFY_FAILURE_UNTRUSTED),
            (symmetric, identity_pb2.VERIFY_FAILURE_UNTRUSTED),
            (unsigned, identity_pb2.VERIFY_FAILURE_UNTRUSTED),
            ("not-a-jwt", identity_pb2.VERIFY_FAILURE_MALFORMED),
        ]
        for token, failure in expectations:
            reply = await stub.VerifyServiceToken(
                identity_pb2.VerifyServiceTokenRequest(token=token)
            )
            assert (reply.valid, reply.failure) == (False, failure), token
            assert reply.reason

        async def short_token_expired() -> bool:  # its 1 s lifetime (and no leeway) passes
            expired = await stub.VerifyServiceToken(
                identity_pb2.VerifyServiceTokenRequest(token=short.token)
            )
            return (expired.valid, expired.failure) == (
                False,
                identity_pb2.VERIFY_FAILURE_EXPIRED,
            )

        await eventually(short_token_expired, timeout_s=10, what="the 1 s token expired")


async def test_tokens_only_for_the_callers_cluster_and_bad_requests_store_nothing(
    mesh10: Mesh,
) -> None:
    keys = db(mesh10)[schema.SIGNING_KEYS]
    audit = db(mesh10)[schema.AUDIT]
    async with mesh10.channel("mesh", "gateway") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        await stub.IssueServiceToken(identity_pb2.IssueServiceTokenRequest())
        before = await keys.count_documents({})
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueServiceToken(
                identity_pb2.IssueServiceTokenRequest(cluster=access_pb2.CLUSTER_PAYMENTS)
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        refusal = await audit.find_one(
            {"action": "IssueServiceToken", "resource": "payments"}, sort=[("event_time", -1)]
        )
        assert refusal is not None and refusal["result"] == "failure"
        assert refusal["peer"] == "gateway"
        bad_requests = [
            identity_pb2.IssueServiceTokenRequest(ttl_seconds=86401),
            identity_pb2.IssueServiceTokenRequest(ttl_seconds=-1),
            identity_pb2.IssueServiceTokenRequest(audience="Not Allowed"),
            identity_pb2.IssueServiceTokenRequest(cluster=999),  # type: ignore[arg-type]
        ]
        for request in bad_requests:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.IssueServiceToken(request)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
            assert details(caught.value).reason.startswith("LUCID_ERR_")
        for verify in (
            identity_pb2.VerifyServiceTokenRequest(token=""),
            identity_pb2.VerifyServiceTokenRequest(token="x", audience="UPPER"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.VerifyServiceToken(verify)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert await keys.count_documents({}) == before


async def test_an_admin_obtains_a_token_for_a_named_cluster_only(mesh10: Mesh) -> None:
    admin = bearer(await mesh10.token(role=access_pb2.ROLE_SUPER_ADMIN))
    async with mesh10.channel("mesh") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        issued = await stub.IssueServiceToken(
            identity_pb2.IssueServiceTokenRequest(cluster=access_pb2.CLUSTER_NODES), metadata=admin
        )
        assert issued.claims.cluster == access_pb2.CLUSTER_NODES
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.IssueServiceToken(identity_pb2.IssueServiceTokenRequest(), metadata=admin)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- certificate rotation -----------------------------------------------------------------


async def issue(stub: Any, cluster: int, days: int = 0) -> identity_pb2.IssuedCertificate:
    reply = await stub.IssueCertificate(
        identity_pb2.IssueCertificateRequest(
            cluster=cluster, csr_pem=csr_for("x"), validity_days=days
        )
    )
    certificate: identity_pb2.IssuedCertificate = reply.certificate
    return certificate


async def test_a_certificate_is_rotated_when_due_or_forced_and_the_old_one_kept_a_while(
    mesh10: Mesh,
) -> None:
    certificates = db(mesh10)[schema.CERTIFICATES]
    async with mesh10.channel("mesh", "sessions") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        fresh = await issue(stub, access_pb2.CLUSTER_SESSIONS)
        key = ec.generate_private_key(ec.SECP256R1())
        early = await stub.RotateCertificates(
            identity_pb2.RotateCertificatesRequest(
                current_serial_number=fresh.serial_number, csr_pem=csr_for("s", key)
            )
        )
        assert not early.rotated and not early.HasField("certificate")
        assert early.next_rotation_time.ToSeconds() == fresh.not_after.ToSeconds() - 30 * 86400
        assert "revoke_at" not in (
            await certificates.find_one({"serial_number": fresh.serial_number})
        )

        forced = await stub.RotateCertificates(
            identity_pb2.RotateCertificatesRequest(
                current_serial_number=fresh.serial_number, csr_pem=csr_for("s", key), force=True
            )
        )
        new = forced.certificate
        assert forced.rotated and new.serial_number != fresh.serial_number
        assert (new.spiffe_id, new.service_name) == (fresh.spiffe_id, fresh.service_name)
        cert = x509.load_pem_x509_certificate(new.certificate_pem.encode())
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=90)
        grace = forced.old_certificate_revoke_time.ToSeconds() - time.time()
        assert 23 * 3600 < grace <= 24 * 3600
        assert forced.next_rotation_time.ToSeconds() == new.not_after.ToSeconds() - 30 * 86400
        for pem in (fresh.certificate_pem, new.certificate_pem):
            verified = await stub.VerifyCertificate(
                identity_pb2.VerifyCertificateRequest(certificate_pem=pem)
            )
            assert verified.valid  # the old one until the grace period ends
        stored = await certificates.find_one({"serial_number": new.serial_number})
        assert stored["replaces"] == fresh.serial_number and stored["issued_to"] == "sessions"

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RotateCertificates(
                identity_pb2.RotateCertificatesRequest(
                    current_serial_number=fresh.serial_number, csr_pem=csr_for("s"), force=True
                )
            )
        assert details(caught.value).reason == "LUCID_ERR_4003"

        due = await issue(stub, access_pb2.CLUSTER_SESSIONS, days=20)
        rotated = await stub.RotateCertificates(
            identity_pb2.RotateCertificatesRequest(
                current_serial_number=due.serial_number.upper(), csr_pem=csr_for("s")
            )
        )
        assert rotated.rotated
        # never accepted past its own expiry
        assert rotated.old_certificate_revoke_time.ToSeconds() <= due.not_after.ToSeconds()
    audit = await db(mesh10)[schema.AUDIT].find_one(
        {"action": "RotateCertificates", "resource": fresh.serial_number, "result": "success"}
    )
    assert audit is not None and audit["peer"] == "sessions"


async def test_rotation_only_by_the_owner_of_a_known_certificate_with_a_sound_request(
    mesh10: Mesh,
) -> None:
    certificates = db(mesh10)[schema.CERTIFICATES]
    async with mesh10.channel("mesh", "sessions") as channel:
        current = await issue(
            identity_pb2_grpc.IdentityServiceStub(channel), access_pb2.CLUSTER_SESSIONS
        )
    count = await certificates.count_documents({})
    async with mesh10.channel("mesh", "gateway") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RotateCertificates(
                identity_pb2.RotateCertificatesRequest(
                    current_serial_number=current.serial_number, csr_pem=csr_for("g"), force=True
                )
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RotateCertificates(
                identity_pb2.RotateCertificatesRequest(
                    current_serial_number=uuid.uuid4().hex, csr_pem=csr_for("g"), force=True
                )
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RotateCertificates(
                identity_pb2.RotateCertificatesRequest(csr_pem=csr_for("g"), force=True)
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    async with mesh10.channel("mesh", "sessions") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        weak = csr_for("s", rsa.generate_private_key(public_exponent=65537, key_size=1024))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RotateCertificates(
                identity_pb2.RotateCertificatesRequest(
                    current_serial_number=current.serial_number, csr_pem=weak, force=True
                )
            )
        assert details(caught.value).reason == "LUCID_ERR_4952"
    assert await certificates.count_documents({}) == count
    stored = await certificates.find_one({"serial_number": current.serial_number})
    assert "revoke_at" not in stored
