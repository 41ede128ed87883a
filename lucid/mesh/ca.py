"""The mesh CA at work: signing a cluster's certificate signing request and verifying
certificates (spec 10 §4 PKI, settled by DECISIONS: SPIFFE URI SAN
``spiffe://lucid.local/<plane>/<cluster>``, OU ``plane-<plane>``, 90 days).

The CA key is the development CA of ``lucid certs init`` (sealed at rest); it never
leaves this cluster. A request's key stays with the requester: only its public
key is signed. Keys must be ECDSA P-256/P-384 or RSA of at least 2048 bits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lucid.mesh.v1 import identity_pb2

from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.identity import ServiceIdentity
from lucid.runtime.planes import known_identity
from lucid.runtime.tls import CERT_DAYS, CertificateAuthority, certificate_identity, dns_name

MIN_RSA_BITS = 2048
EC_CURVES = (ec.SECP256R1, ec.SECP384R1)


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    """A signing request whose self-signature holds and whose key is strong enough."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError as exc:
        raise LucidError(
            ErrorCode.ERROR_CODE_MESH_CSR_INVALID, f"unreadable signing request: {exc}"
        ) from None
    if not csr.is_signature_valid:
        raise LucidError(
            ErrorCode.ERROR_CODE_MESH_CSR_INVALID, "the signing request's signature is invalid"
        )
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise LucidError(
                ErrorCode.ERROR_CODE_MESH_CSR_INVALID,
                f"RSA keys need at least {MIN_RSA_BITS} bits",
            )
    elif not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, EC_CURVES)):
        raise LucidError(
            ErrorCode.ERROR_CODE_MESH_CSR_INVALID,
            "keys must be ECDSA P-256/P-384 or RSA ≥ 2048 bits",
        )
    return csr


def sign_request(
    ca: CertificateAuthority,
    identity: ServiceIdentity,
    csr: x509.CertificateSigningRequest,
    *,
    service_name: str,
    days: int = CERT_DAYS,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """The certificate for ``identity`` over the request's key."""
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
    return ca.sign(
        identity,
        csr.public_key(),
        days=days,
        common_name=service_name,
        extra_dns=sorted(
            {dns_name(service_name), f"{service_name}.{identity.name}.lucid.internal"}
        ),
        not_before=start,
    )


def spiffe_of(cert: x509.Certificate) -> ServiceIdentity | None:
    """The SPIFFE identity in a certificate's URI SAN."""
    return certificate_identity(cert)


def dns_names(cert: x509.Certificate) -> list[str]:
    """A certificate's DNS SANs."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one certificate."""

    failure: int  # a VerifyFailure value; 0 when it verifies
    reason: str = ""
    identity: ServiceIdentity | None = None

    @property
    def valid(self) -> bool:
        """Whether it verifies."""
        return self.failure == identity_pb2.VERIFY_FAILURE_UNSPECIFIED


def verify(  # noqa: PLR0911 (one return per failure kind)
    ca: CertificateAuthority,
    cert: x509.Certificate,
    *,
    now: dt.datetime,
    expected_cluster: str = "",
    expected_plane: str = "",
    revoked: bool = False,
) -> Verdict:
    """Signed by the CA, within validity, not revoked, its SPIFFE id naming a cluster of
    the right plane (and the OU saying the same), and the expected cluster and plane."""
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return Verdict(identity_pb2.VERIFY_FAILURE_UNTRUSTED, "not issued by the mesh CA")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return Verdict(identity_pb2.VERIFY_FAILURE_EXPIRED, "outside its validity period")
    if revoked:
        return Verdict(identity_pb2.VERIFY_FAILURE_REVOKED, "revoked")
    identity = spiffe_of(cert)
    if identity is None:
        return Verdict(identity_pb2.VERIFY_FAILURE_WRONG_IDENTITY, "no Lucid SPIFFE id")
    if not known_identity(identity):
        return Verdict(
            identity_pb2.VERIFY_FAILURE_WRONG_IDENTITY,
            f"{identity.spiffe_id}: {identity.name} is not in plane {identity.plane}",
            identity,
        )
    units = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if units != [f"plane-{identity.plane}"]:
        return Verdict(
            identity_pb2.VERIFY_FAILURE_WRONG_IDENTITY,
            f"OU {units} does not match plane {identity.plane}",
            identity,
        )
    if expected_cluster and identity.name != expected_cluster:
        return Verdict(
            identity_pb2.VERIFY_FAILURE_WRONG_IDENTITY,
            f"names {identity.name}, expected {expected_cluster}",
            identity,
        )
    if expected_plane and identity.plane != expected_plane:
        return Verdict(
            identity_pb2.VERIFY_FAILURE_WRONG_IDENTITY,
            f"names plane {identity.plane}, expected {expected_plane}",
            identity,
        )
    return Verdict(identity_pb2.VERIFY_FAILURE_UNSPECIFIED, "", identity)
