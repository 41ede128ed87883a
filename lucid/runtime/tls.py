"""mTLS: the development CA, per-cluster certificates, gRPC credentials, peer identity.

``lucid certs init`` makes a CA (key sealed at rest) and one certificate per
cluster, the edge and the operator, each carrying its SPIFFE id as a URI SAN
(spiffe://lucid.local/<plane>/<name>), ``<name>.lucid.internal``, ``localhost``
and 127.0.0.1. Keys are ECDSA P-256 (fast handshakes; the spec's RSA sizes buy
nothing here), certificates live 90 days and are renewed when 30 or fewer
remain (spec 10 §4). Every server requires a client certificate from the same
CA; a plaintext client or one without a certificate fails the handshake. The edge's
browser-facing HTTPS certificate (``edge-web``) comes from the same CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lucid.lib.sealing import Sealer
from lucid.runtime.identity import ServiceIdentity, identity_for, parse_spiffe_id

CERT_DAYS = 90
RENEW_DAYS = 30
CA_DAYS = 3650
CA_CERT = "ca.crt"
CA_KEY = "ca.key.sealed"


def dns_name(name: str) -> str:
    """The DNS name a service's certificate carries: ``<name>.lucid.internal``."""
    return f"{name}.lucid.internal"


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem)


class CertificateAuthority:
    """A CA that issues Lucid service certificates."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self._key = key

    @classmethod
    def create(cls, common_name: str = "Lucid development CA") -> CertificateAuthority:
        """A new self-signed CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lucid"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def save(self, directory: Path, sealer: Sealer) -> None:
        """Writes ``ca.crt`` and the sealed ``ca.key.sealed`` (mode 0600)."""
        _write(directory / CA_CERT, self.cert_pem, 0o644)
        _write(directory / CA_KEY, sealer.seal(_key_pem(self._key)), 0o600)

    @classmethod
    def load(cls, directory: Path, sealer: Sealer) -> CertificateAuthority:
        """Reads a CA saved by ``save``."""
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key(
            sealer.unseal((directory / CA_KEY).read_bytes()), password=None
        )
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("the CA key is not an EC key")
        return cls(cert, key)

    def _build(
        self,
        subject: x509.Name,
        sans: list[x509.GeneralName],
        usages: list[x509.ObjectIdentifier],
        start: dt.datetime,
        days: int,
        *,
        public_key: CertificatePublicKeyTypes,
    ) -> x509.Certificate:
        """A leaf certificate for ``public_key``, signed by this CA."""
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )

    def _sign(
        self,
        subject: x509.Name,
        sans: list[x509.GeneralName],
        usages: list[x509.ObjectIdentifier],
        start: dt.datetime,
        days: int,
    ) -> IssuedCertificate:
        """A new key and a leaf certificate for it, signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._build(subject, sans, usages, start, days, public_key=key.public_key())
        return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    @staticmethod
    def _service_names(
        identity: ServiceIdentity, common_name: str, extra_dns: Iterable[str]
    ) -> tuple[x509.Name, list[x509.GeneralName]]:
        """The subject (OU ``plane-<plane>``) and SANs (SPIFFE id first) of a service."""
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lucid"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"plane-{identity.plane}"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        sans: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(identity.spiffe_id),
            x509.DNSName(dns_name(identity.name)),
            x509.DNSName("localhost"),
            *(x509.DNSName(d) for d in extra_dns),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        return subject, sans

    def issue(
        self,
        identity: ServiceIdentity,
        *,
        days: int = CERT_DAYS,
        extra_dns: Iterable[str] = (),
        not_before: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """A client-and-server certificate for ``identity``, with a new key."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.sign(
            identity, key.public_key(), days=days, extra_dns=extra_dns, not_before=not_before
        )
        return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def sign(
        self,
        identity: ServiceIdentity,
        public_key: CertificatePublicKeyTypes,
        *,
        days: int = CERT_DAYS,
        common_name: str | None = None,
        extra_dns: Iterable[str] = (),
        not_before: dt.datetime | None = None,
    ) -> x509.Certificate:
        """A client-and-server certificate for ``identity`` over a given public key
        (the mesh signs signing requests with this; the key stays with the requester)."""
        subject, sans = self._service_names(identity, common_name or identity.name, extra_dns)
        return self._build(
            subject,
            sans,
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
            days,
            public_key=public_key,
        )

    def issue_web(
        self, dns_names: Iterable[str], ips: Iterable[str], *, days: int = CERT_DAYS
    ) -> IssuedCertificate:
        """A server-only HTTPS certificate for a browser-facing listener (the edge).

        It carries DNS and IP SANs only (no SPIFFE id: it is no service identity),
        the serverAuth usage and a validity browsers accept (well under 398 days).
        """
        names = list(dict.fromkeys(dns_names))
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lucid"),
                x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
            ]
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
        start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        return self._sign(subject, sans, [ExtendedKeyUsageOID.SERVER_AUTH], start, days)


@dataclass(frozen=True)
class CertPaths:
    """Where one identity's certificate, key and the CA certificate are."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def of(cls, directory: Path, name: str) -> CertPaths:
        """The files of identity ``name`` in ``directory``."""
        return cls(directory / f"{name}.crt", directory / f"{name}.key", directory / CA_CERT)

    def write(self, issued: IssuedCertificate) -> None:
        """Stores an issued certificate (key mode 0600)."""
        _write(self.key, issued.key_pem, 0o600)
        _write(self.cert, issued.cert_pem, 0o644)

    def needs_renewal(self, now: dt.datetime | None = None) -> bool:
        """True when missing, or when ``RENEW_DAYS`` or fewer remain."""
        if not (self.cert.exists() and self.key.exists()):
            return True
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        now = now or dt.datetime.now(dt.UTC)
        return cert.not_valid_after_utc - now <= dt.timedelta(days=RENEW_DAYS)


def init_certs(directory: Path, sealer: Sealer, names: Iterable[str]) -> list[str]:
    """Makes the CA if missing and (re)issues every missing or expiring certificate.

    Returns the names whose certificates were written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if (directory / CA_CERT).exists():
        ca = CertificateAuthority.load(directory, sealer)
    else:
        ca = CertificateAuthority.create()
        ca.save(directory, sealer)
    written = []
    for name in names:
        paths = CertPaths.of(directory, name)
        if paths.needs_renewal():
            paths.write(ca.issue(identity_for(name)))
            written.append(name)
    return written


WEB_CERT = "edge-web"
WEB_DNS = ("localhost", "edge.lucid.internal")
WEB_IPS = ("127.0.0.1", "::1")


def ensure_web_certificate(
    directory: Path, sealer: Sealer, hostnames: Iterable[str] = ()
) -> CertPaths:
    """The edge's HTTPS certificate (``edge-web``), issued by the CA when missing,
    expiring or lacking one of the wanted names; returns its paths."""
    paths = CertPaths.of(directory, WEB_CERT)
    dns = [*WEB_DNS, *(h.strip() for h in hostnames if h.strip())]
    if not paths.needs_renewal():
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if set(dns) <= set(san.get_values_for_type(x509.DNSName)):
            return paths
    ca = CertificateAuthority.load(directory, sealer)
    paths.write(ca.issue_web(dns, WEB_IPS))
    return paths


def server_credentials(paths: CertPaths) -> grpc.ServerCredentials:
    """TLS that requires and verifies a client certificate from the CA."""
    return grpc.ssl_server_credentials(
        [(paths.key.read_bytes(), paths.cert.read_bytes())],
        root_certificates=paths.ca.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(paths: CertPaths) -> grpc.ChannelCredentials:
    """TLS that presents this identity's certificate and trusts only the CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=paths.ca.read_bytes(),
        private_key=paths.key.read_bytes(),
        certificate_chain=paths.cert.read_bytes(),
    )


def peer_identity(auth_context: dict[str, list[bytes]]) -> ServiceIdentity | None:
    """The SPIFFE identity of a verified peer, from a gRPC auth context."""
    for raw in auth_context.get("peer_spiffe_id", []):
        found = parse_spiffe_id(raw.decode())
        if found:
            return found
    for pem in auth_context.get("x509_pem_cert", []):
        return certificate_identity(x509.load_pem_x509_certificate(pem))
    return None


def certificate_identity(cert: x509.Certificate) -> ServiceIdentity | None:
    """The SPIFFE identity in a certificate's URI SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        found = parse_spiffe_id(uri)
        if found:
            return found
    return None


def forwarded_identity(xfcc: str) -> ServiceIdentity | None:
    """The SPIFFE identity in an ``x-forwarded-client-cert`` header (Envoy's
    ``SANITIZE_SET`` with ``uri``: ``By=…;Hash=…;URI=spiffe://…``); the last element
    is the hop nearest to us."""
    if not xfcc:
        return None
    element = xfcc.rsplit(",", maxsplit=1)[-1]
    for pair in element.split(";"):
        key, _, value = pair.partition("=")
        if key.strip().lower() == "uri":
            return parse_spiffe_id(value.strip().strip('"'))
    return None
