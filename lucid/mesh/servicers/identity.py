"""``lucid.mesh.v1.IdentityService``: the mesh CA and the plane-policy question."""

from __future__ import annotations

import grpc

from lucid.mesh import convert
from lucid.mesh.identity import Identity
from lucid.mesh.v1 import identity_pb2, identity_pb2_grpc
from lucid.runtime.context import current_principal


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    """Translates the identity rpcs to the CA and the plane table."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

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
