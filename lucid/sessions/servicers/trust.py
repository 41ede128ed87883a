"""``lucid.sessions.v1.TrustPolicyService``: CRUD of trust policies."""

from __future__ import annotations

import grpc

from lucid.runtime import paging
from lucid.runtime.context import current_principal
from lucid.sessions import convert
from lucid.sessions.trust_policies import TrustPolicies
from lucid.sessions.v1 import trust_pb2, trust_pb2_grpc


def _fields(
    request: trust_pb2.CreateTrustPolicyRequest | trust_pb2.UpdateTrustPolicyRequest,
) -> dict[str, object]:
    return {
        "name": request.name,
        "description": request.description,
        "rules": [convert.rule_fields(r) for r in request.rules],
        "enabled": request.enabled,
    }


class TrustPolicyServicer(trust_pb2_grpc.TrustPolicyServiceServicer):
    """Translates the trust-policy rpcs to the trust policies."""

    def __init__(self, policies: TrustPolicies) -> None:
        self.policies = policies

    async def ListTrustPolicies(
        self, request: trust_pb2.ListTrustPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> trust_pb2.ListTrustPoliciesResponse:
        owner = self.policies.owner(current_principal(), request.owner_user_id)
        page = paging.page(request, scope=owner)
        docs, total = await self.policies.page(owner, offset=page.offset, limit=page.size)
        return trust_pb2.ListTrustPoliciesResponse(
            policies=[convert.policy(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    async def GetTrustPolicy(
        self, request: trust_pb2.GetTrustPolicyRequest, context: grpc.aio.ServicerContext
    ) -> trust_pb2.GetTrustPolicyResponse:
        doc = await self.policies.get(current_principal(), request.policy_id)
        return trust_pb2.GetTrustPolicyResponse(policy=convert.policy(doc))

    async def CreateTrustPolicy(
        self, request: trust_pb2.CreateTrustPolicyRequest, context: grpc.aio.ServicerContext
    ) -> trust_pb2.CreateTrustPolicyResponse:
        owner = self.policies.owner(current_principal(), request.owner_user_id)
        doc = await self.policies.create(owner, _fields(request))
        return trust_pb2.CreateTrustPolicyResponse(policy=convert.policy(doc))

    async def UpdateTrustPolicy(
        self, request: trust_pb2.UpdateTrustPolicyRequest, context: grpc.aio.ServicerContext
    ) -> trust_pb2.UpdateTrustPolicyResponse:
        doc = await self.policies.update(current_principal(), request.policy_id, _fields(request))
        return trust_pb2.UpdateTrustPolicyResponse(policy=convert.policy(doc))

    async def DeleteTrustPolicy(
        self, request: trust_pb2.DeleteTrustPolicyRequest, context: grpc.aio.ServicerContext
    ) -> trust_pb2.DeleteTrustPolicyResponse:
        await self.policies.delete(current_principal(), request.policy_id)
        return trust_pb2.DeleteTrustPolicyResponse()
