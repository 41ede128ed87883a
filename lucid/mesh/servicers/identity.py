"""``lucid.mesh.v1.IdentityService``: the mesh CA, service JWTs and the plane-policy
question. Certificate issuing and rotation and token issuing are audited
(``mesh_audit_events``)."""

from __future__ import annotations

import grpc

from lucid.mesh import convert
from lucid.mesh.identity import Identity
from lucid.mesh.tokens import ServiceTokens
from lucid.mesh.v1 import identity_pb2, identity_pb2_grpc
from lucid.runtime.audit import AuditTrail, audited
from lucid.runtime.context import current_principal
from lucid.runtime.identity import cluster_from_enum

TOKEN_TYPE = "Bearer"  # noqa: S105 (the scheme, not a secret)


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    """Translates the identity rpcs to the CA and the plane table."""

    def __init__(self, identity: Identity, tokens: ServiceTokens, audit: AuditTrail) -> None:
        self.identity = identity
        self.tokens = tokens
        self.audit = audit

    @audited(lambda r: cluster_from_enum(r.cluster))
    async def IssueCertificate(
        self, request: identity_pb2.IssueCertificateRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IssueCertificateResponse:
        issued = await self.identity.issue(
            request.cluster,
            request.csr_pem,
            request.service_name,
            request.validity_days,
            current_principal(),
        )
        return identity_pb2.IssueCertificateResponse(certificate=issued)

    async def VerifyCertificate(
        self, request: identity_pb2.VerifyCertificateRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.VerifyCertificateResponse:
        found = await self.identity.verify(
            request.certificate_pem,
            convert.expected_cluster(request.expected_cluster),
            convert.expected_plane(request.expected_plane),
        )
        return convert.verification(found)

    @audited(lambda r: r.current_serial_number.lower())
    async def RotateCertificates(
        self, request: identity_pb2.RotateCertificatesRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.RotateCertificatesResponse:
        rotation = await self.identity.rotate(
            request.current_serial_number, request.csr_pem, request.force, current_principal()
        )
        return convert.rotation(rotation)

    @audited(lambda r: cluster_from_enum(r.cluster) if r.cluster else "caller")
    async def IssueServiceToken(
        self, request: identity_pb2.IssueServiceTokenRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IssueServiceTokenResponse:
        issued = await self.tokens.issue(
            request.cluster, request.audience, request.ttl_seconds, current_principal()
        )
        return identity_pb2.IssueServiceTokenResponse(
            token=issued.token, token_type=TOKEN_TYPE, claims=convert.token_claims(issued.claims)
        )

    async def VerifyServiceToken(
        self, request: identity_pb2.VerifyServiceTokenRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.VerifyServiceTokenResponse:
        verdict = await self.tokens.verify(request.token, request.audience)
        response = identity_pb2.VerifyServiceTokenResponse(
            valid=verdict.valid,
            failure=verdict.failure,  # type: ignore[arg-type]
            reason=verdict.reason,
        )
        if verdict.claims is not None:
            response.claims.CopyFrom(convert.token_claims(verdict.claims))
        return response

    async def Authorize(
        self, request: identity_pb2.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.AuthorizeResponse:
        decision = self.identity.authorize(
            request.source_spiffe_id, request.full_method, request.destination_cluster
        )
        return identity_pb2.AuthorizeResponse(
            allowed=decision.allowed,
            reason=decision.reason,
            matched_rule=decision.rule,
            policy_version=self.identity.policy.version,
        )
