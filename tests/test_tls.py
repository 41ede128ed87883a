"""mTLS: certificates carry SPIFFE ids; only clients with a certificate from the CA get in."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.lib.sealing import Sealer
from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.runtime.identity import identity_for, parse_spiffe_id
from tests.support import Mesh


def test_certificates_carry_spiffe_id_plane_and_mode(settings: Settings) -> None:
    paths = tls.CertPaths.of(settings.certs_dir, "sessions")
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "spiffe://lucid.local/ops/sessions" in sans.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert "sessions.lucid.internal" in sans.get_values_for_type(x509.DNSName)
    ou = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
    assert ou == "plane-ops"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=89) < lifetime <= dt.timedelta(days=90, minutes=5)
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((settings.certs_dir / tls.CA_KEY).stat().st_mode) == 0o600


def test_ca_key_is_sealed_at_rest(settings: Settings) -> None:
    sealed = (settings.certs_dir / tls.CA_KEY).read_bytes()
    assert b"PRIVATE KEY" not in sealed
    assert tls.CertificateAuthority.load(settings.certs_dir, Sealer("test-passphrase")).cert


def test_planes_come_from_the_contract() -> None:
    assert identity_for("blockchain").spiffe_id == "spiffe://lucid.local/chain/blockchain"
    assert identity_for("payments").spiffe_id == "spiffe://lucid.local/wallet/payments"
    assert identity_for("auth").spiffe_id == "spiffe://lucid.local/shared/auth"
    assert identity_for("edge").spiffe_id == "spiffe://lucid.local/edge/edge"
    assert parse_spiffe_id("spiffe://evil.example/ops/sessions") is None
    assert parse_spiffe_id("spiffe://lucid.local/ops") is None


def test_init_is_idempotent_and_renews_expiring(tmp_path: Path) -> None:
    sealer = Sealer("pw")
    assert tls.init_certs(tmp_path, sealer, ["auth", "edge"]) == ["auth", "edge"]
    assert tls.init_certs(tmp_path, sealer, ["auth", "edge"]) == []
    ca = tls.CertificateAuthority.load(tmp_path, sealer)
    old = ca.issue(identity_for("auth"), days=20)  # inside the 30-day renewal window
    tls.CertPaths.of(tmp_path, "auth").write(old)
    assert tls.init_certs(tmp_path, sealer, ["auth", "edge"]) == ["auth"]


async def _check(mesh: Mesh, credentials: grpc.ChannelCredentials | None) -> None:
    target = f"{mesh.settings.host}:{mesh.settings.port('auth')}"
    if credentials is None:
        channel = grpc.aio.insecure_channel(target)
    else:
        channel = grpc.aio.secure_channel(
            target, credentials, options=[("grpc.ssl_target_name_override", "auth.lucid.internal")]
        )
    async with channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)


async def test_client_with_certificate_from_the_ca_gets_in(mesh: Mesh) -> None:
    paths = tls.CertPaths.of(mesh.settings.certs_dir, "operator")
    await _check(mesh, tls.channel_credentials(paths))


async def test_plaintext_client_is_refused(mesh: Mesh) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _check(mesh, None)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_without_certificate_fails_the_handshake(mesh: Mesh) -> None:
    ca = (mesh.settings.certs_dir / tls.CA_CERT).read_bytes()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _check(mesh, grpc.ssl_channel_credentials(root_certificates=ca))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_with_certificate_from_another_ca_fails_the_handshake(
    mesh: Mesh, tmp_path: Path
) -> None:
    other = tls.CertificateAuthority.create("Not Lucid")
    issued = other.issue(identity_for("sessions"))  # right identity, wrong CA
    ca = (mesh.settings.certs_dir / tls.CA_CERT).read_bytes()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=issued.key_pem, certificate_chain=issued.cert_pem
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _check(mesh, credentials)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_server_from_another_ca_is_not_trusted(mesh: Mesh) -> None:
    """The client side too: a channel trusting only the Lucid CA refuses a foreign server."""
    other = tls.CertificateAuthority.create("Impostor")
    issued = other.issue(identity_for("auth"))
    server = grpc.aio.server()
    port = server.add_secure_port(
        "127.0.0.1:0", grpc.ssl_server_credentials([(issued.key_pem, issued.cert_pem)])
    )
    await server.start()
    try:
        credentials = tls.channel_credentials(tls.CertPaths.of(mesh.settings.certs_dir, "operator"))
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{port}",
            credentials,
            options=[("grpc.ssl_target_name_override", "auth.lucid.internal")],
        ) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=3
                )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)
