"""The mesh CA and the plane-policy question (spec 10 §3): issuing certificates to a
cluster's own services, verifying certificates, and answering Authorize."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock
from lucid.mesh import ca, discovery
from lucid.mesh.store.certificates import CertificateStore, IssuedRecord
from lucid.mesh.v1 import identity_pb2
from lucid.runtime.context import Principal
from lucid.runtime.contracts import Catalog
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError, not_found
from lucid.runtime.identity import (
    cluster_enum_name,
    cluster_from_enum,
    identity_for,
    parse_spiffe_id,
)
from lucid.runtime.planes import Decision, PlanePolicy, audit
from lucid.runtime.tls import CERT_DAYS, CertificateAuthority
from lucid.runtime.wire import timestamp


def caller_name(caller: Principal) -> str:
    """Who a record names as the actor: the cluster, or the user behind a client call."""
    if caller.peer.is_cluster:
        return caller.peer.name
    return caller.user.user_id if caller.user else caller.peer.name


def plane_value(plane: str) -> int:
    """``operations`` → ``PLANE_OPERATIONS``."""
    return int(access_pb2.Plane.Value(f"PLANE_{plane.upper()}"))


ROTATE_BEFORE = dt.timedelta(days=30)
"""A certificate is due for rotation when it has this long or less left."""
ROTATION_GRACE = dt.timedelta(hours=24)
"""How long a rotated certificate stays accepted (never past its own expiry)."""


@dataclass(frozen=True)
class Rotation:
    """The outcome of RotateCertificates (times in epoch seconds)."""

    certificate: identity_pb2.IssuedCertificate | None
    old_revoke_at: float | None
    next_rotation_at: float


@dataclass(frozen=True)
class Verification:
    """A certificate's verdict, with what the answer reports."""

    verdict: ca.Verdict
    serial_number: str
    certificate: x509.Certificate | None


class Identity:
    """Issues and verifies mesh certificates; decides Authorize questions."""

    def __init__(
        self,
        authority: Callable[[], CertificateAuthority],
        certificates: CertificateStore,
        policy: PlanePolicy,
        catalog: Catalog,
        clock: Clock,
    ) -> None:
        self.authority = authority
        self.certificates = certificates
        self.policy = policy
        self.catalog = catalog
        self.clock = clock

    async def issue(
        self,
        cluster: int,
        csr_pem: str,
        service_name: str,
        validity_days: int,
        caller: Principal,
    ) -> identity_pb2.IssuedCertificate:
        """A certificate for one of the caller's own cluster's services."""
        if not discovery.may_act_for(caller, cluster):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "a service may obtain certificates only for its own cluster",
            )
        csr = ca.load_csr(csr_pem)
        name = cluster_from_enum(cluster)
        authority = self.authority()
        cert = ca.sign_request(
            authority,
            identity_for(name),
            csr,
            service_name=service_name or name,
            days=validity_days or CERT_DAYS,
            now=self.clock.now(),
        )
        issued = describe(cert, authority)
        await self.certificates.record(
            IssuedRecord(
                serial_number=issued.serial_number,
                spiffe_id=issued.spiffe_id,
                service_name=issued.service_name,
                not_after=cert.not_valid_after_utc.timestamp(),
                issued_at=self.clock.timestamp(),
                issued_to=caller_name(caller),
            )
        )
        return issued

    async def rotate(
        self, serial_number: str, csr_pem: str, force: bool, caller: Principal
    ) -> Rotation:
        """A new certificate for the identity of ``serial_number`` when it is due (or
        forced); the old one is revoked after the grace period (at its expiry at the
        latest). Only the certificate's own cluster (or a super admin) may rotate it."""
        serial = serial_number.lower()
        record = await self.certificates.get(serial)
        if record is None:
            raise not_found(f"certificate {serial}")
        identity = parse_spiffe_id(record.spiffe_id)
        assert identity is not None  # only certificates with a SPIFFE id are recorded
        cluster = access_pb2.Cluster.Value(cluster_enum_name(identity.name))
        if not discovery.may_act_for(caller, cluster):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "a service may rotate only its own cluster's certificates",
            )
        now = self.clock.now()
        if record.revoke_at is not None:
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_ALLOWED,
                f"certificate {serial} was already rotated or revoked",
            )
        if record.not_after <= now.timestamp():
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_ALLOWED,
                f"certificate {serial} has expired; request a new one with IssueCertificate",
            )
        due = record.not_after - ROTATE_BEFORE.total_seconds()
        if not force and now.timestamp() < due:
            return Rotation(None, None, due)
        csr = ca.load_csr(csr_pem)
        revoke_at = min(record.not_after, (now + ROTATION_GRACE).timestamp())
        if not await self.certificates.claim_rotation(serial, revoke_at):
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_ALLOWED,
                f"certificate {serial} was already rotated or revoked",
            )
        authority = self.authority()
        cert = ca.sign_request(
            authority,
            identity,
            csr,
            service_name=record.service_name,
            days=CERT_DAYS,
            now=now,
        )
        issued = describe(cert, authority)
        not_after = cert.not_valid_after_utc.timestamp()
        await self.certificates.record(
            IssuedRecord(
                serial_number=issued.serial_number,
                spiffe_id=issued.spiffe_id,
                service_name=issued.service_name,
                not_after=not_after,
                issued_at=self.clock.timestamp(),
                issued_to=caller_name(caller),
                replaces=serial,
            )
        )
        return Rotation(issued, revoke_at, not_after - ROTATE_BEFORE.total_seconds())

    async def verify(self, pem: str, expected_cluster: str, expected_plane: str) -> Verification:
        """Whether a certificate is the mesh CA's, current, unrevoked and as expected."""
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            verdict = ca.Verdict(identity_pb2.VERIFY_FAILURE_MALFORMED, "unreadable certificate")
            return Verification(verdict, "", None)
        serial = f"{cert.serial_number:x}"
        record = await self.certificates.get(serial)
        now = self.clock.now()
        verdict = ca.verify(
            self.authority(),
            cert,
            now=now,
            expected_cluster=expected_cluster,
            expected_plane=expected_plane,
            revoked=bool(record and record.revoked(now.timestamp())),
        )
        return Verification(verdict, serial, cert)

    def authorize(self, source_spiffe_id: str, full_method: str, destination: int) -> Decision:
        """Whether the plane table lets ``source`` call ``full_method`` (audited)."""
        source = parse_spiffe_id(source_spiffe_id)
        info = self.catalog.methods.get(full_method)
        if source is None or info is None:
            raise not_found(f"method {full_method}")
        if info.cluster != cluster_from_enum(destination):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"{full_method} is served by {info.cluster}",
                field_violations=[FieldViolation("destination_cluster", f"must be {info.cluster}")],
            )
        decision = self.policy.decide(source, info)
        audit(decision, source, info)
        return decision


def describe(
    cert: x509.Certificate, authority: CertificateAuthority
) -> identity_pb2.IssuedCertificate:
    """An issued certificate as the contract describes it."""
    identity = ca.spiffe_of(cert)
    assert identity is not None
    common = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return identity_pb2.IssuedCertificate(
        serial_number=f"{cert.serial_number:x}",
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        chain_pem=authority.cert_pem.decode(),
        spiffe_id=identity.spiffe_id,
        cluster=access_pb2.Cluster.Value(cluster_enum_name(identity.name)),
        plane=plane_value(identity.plane),  # type: ignore[arg-type]
        service_name=str(common[0].value) if common else identity.name,
        dns_names=ca.dns_names(cert),
        not_before=timestamp(cert.not_valid_before_utc.timestamp()),
        not_after=timestamp(cert.not_valid_after_utc.timestamp()),
    )
