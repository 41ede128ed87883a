"""Proto ↔ record mapping of the mesh cluster."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from lucid.common.v1 import access_pb2
from lucid.mesh.identity import Rotation, Verification, plane_value
from lucid.mesh.store import from_doc
from lucid.mesh.store.events import StoredEvent
from lucid.mesh.store.registry import ServiceQuery
from lucid.mesh.tokens import TokenClaims
from lucid.mesh.v1 import discovery_pb2, identity_pb2, messaging_pb2, policy_pb2
from lucid.runtime.identity import cluster_enum_name, cluster_from_enum
from lucid.runtime.planes import Rule
from lucid.runtime.wire import timestamp

STATUS_VALUES = {
    "queued": messaging_pb2.MESSAGE_STATUS_QUEUED,
    "processing": messaging_pb2.MESSAGE_STATUS_PROCESSING,
    "delivered": messaging_pb2.MESSAGE_STATUS_DELIVERED,
    "failed": messaging_pb2.MESSAGE_STATUS_FAILED,
    "expired": messaging_pb2.MESSAGE_STATUS_EXPIRED,
}


def service_query(request: discovery_pb2.ListServicesRequest) -> ServiceQuery:
    """The filter of a ListServices request."""
    return ServiceQuery(
        cluster=request.cluster,
        plane=request.plane,
        status=request.status,
        service_name=request.service_name,
    )


def expected_cluster(value: int) -> str:
    """A Cluster enum value as a cluster name ("" for unspecified)."""
    return cluster_from_enum(value) if value else ""


def expected_plane(value: int) -> str:
    """A Plane enum value as a plane name ("" for unspecified)."""
    if not value:
        return ""
    return str(access_pb2.Plane.Name(value)).lower().removeprefix("plane_")  # type: ignore[arg-type]


def verification(found: Verification) -> identity_pb2.VerifyCertificateResponse:
    """The answer of VerifyCertificate."""
    verdict = found.verdict
    response = identity_pb2.VerifyCertificateResponse(
        valid=verdict.valid,
        failure=verdict.failure,  # type: ignore[arg-type]
        reason=verdict.reason,
        serial_number=found.serial_number,
    )
    if found.certificate is not None:
        response.not_after.CopyFrom(timestamp(found.certificate.not_valid_after_utc.timestamp()))
    if verdict.identity is not None:
        response.spiffe_id = verdict.identity.spiffe_id
        if verdict.valid:
            response.cluster = access_pb2.Cluster.Value(cluster_enum_name(verdict.identity.name))
            response.plane = plane_value(verdict.identity.plane)  # type: ignore[assignment]
    return response


def rotation(found: Rotation) -> identity_pb2.RotateCertificatesResponse:
    """The answer of RotateCertificates."""
    response = identity_pb2.RotateCertificatesResponse(
        rotated=found.certificate is not None,
        next_rotation_time=timestamp(found.next_rotation_at),
    )
    if found.certificate is not None:
        response.certificate.CopyFrom(found.certificate)
    if found.old_revoke_at is not None:
        response.old_certificate_revoke_time.CopyFrom(timestamp(found.old_revoke_at))
    return response


def token_claims(claims: TokenClaims) -> identity_pb2.ServiceTokenClaims:
    """A service token's claims as the contract describes them."""
    return identity_pb2.ServiceTokenClaims(
        service_name=claims.service_name,
        cluster=access_pb2.Cluster.Value(cluster_enum_name(claims.cluster)),
        plane=plane_value(claims.plane),  # type: ignore[arg-type]
        permissions=claims.permissions,
        jti=claims.jti,
        issuer=claims.issuer,
        audience=claims.audience,
        issue_time=timestamp(claims.issued_at),
        expire_time=timestamp(claims.expires_at),
    )


def plane_rule(rule: Rule) -> policy_pb2.PlaneRule:
    """A rule of the table as the contract describes it (one cluster or plane each side)."""
    message = policy_pb2.PlaneRule(
        kinds=[access_pb2.OperationKind.ValueType(k) for k in rule.kinds],
        methods=list(rule.methods),
        description=rule.description,
    )
    if len(rule.source.clusters) == 1:
        message.source_cluster = access_pb2.Cluster.Value(
            cluster_enum_name(rule.source.clusters[0])
        )
    if len(rule.source.planes) == 1:
        message.source_plane = plane_value(rule.source.planes[0])  # type: ignore[assignment]
    if len(rule.destination.clusters) == 1:
        message.destination_cluster = access_pb2.Cluster.Value(
            cluster_enum_name(rule.destination.clusters[0])
        )
    if rule.client_facing:
        message.methods.append("client-facing:*")
    if len(rule.source.clusters) > 1 or len(rule.destination.clusters) > 1:
        message.description += f" [{rule.source.describe()} → {rule.destination.describe()}]"
    return message


def message(doc: dict[str, Any], *, payload: bool) -> messaging_pb2.Message:
    """A stored message with its state (without its payload for status queries)."""
    out = from_doc(doc["doc"], messaging_pb2.Message)
    if not payload:
        out.ClearField("payload")
    out.status = STATUS_VALUES[doc["status"]]
    out.attempts = doc["attempts"]
    out.error_message = doc.get("error_message", "")
    if doc.get("deliver_at"):
        out.deliver_time.CopyFrom(timestamp(doc["deliver_at"]))
    return out


def event(stored: StoredEvent) -> messaging_pb2.Event:
    """An event as delivered."""
    data = struct_pb2.Struct()
    data.update(stored.data)
    return messaging_pb2.Event(
        event_id=stored.event_id,
        event_type=stored.event_type,
        source=stored.source,
        event_time=timestamp(stored.time_s),
        data=data,
        version=stored.version,
        tags=list(stored.tags),
        delivery_count=stored.delivery_count,
    )
