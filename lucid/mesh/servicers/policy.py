"""``lucid.mesh.v1.PolicyService``: traffic and security policies, breaker overrides,
mTLS settings and the plane table."""

from __future__ import annotations

from typing import Any

import grpc

from lucid.mesh import convert
from lucid.mesh.policies import SECURITY, TRAFFIC, Policies
from lucid.mesh.store import MessageT
from lucid.mesh.v1 import policy_pb2, policy_pb2_grpc
from lucid.runtime import paging
from lucid.runtime.context import current_principal
from lucid.runtime.wire import timestamp


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    """Translates the policy rpcs to the policies service."""

    def __init__(self, policies: Policies) -> None:
        self.policies = policies

    async def _list(
        self, kind: str, request: Any, cls: type[MessageT]
    ) -> tuple[list[MessageT], str, int]:
        page = paging.page(request)
        found, total = await self.policies.page(
            kind, cls, enabled_only=request.enabled_only, offset=page.offset, limit=page.size
        )
        return found, page.next_token(len(found), total), total

    async def CreateTrafficPolicy(
        self, request: policy_pb2.CreateTrafficPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.CreateTrafficPolicyResponse:
        policy = await self.policies.create(
            TRAFFIC, request, policy_pb2.TrafficPolicy, current_principal()
        )
        return policy_pb2.CreateTrafficPolicyResponse(policy=policy)

    async def ListTrafficPolicies(
        self, request: policy_pb2.ListTrafficPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ListTrafficPoliciesResponse:
        found, token, total = await self._list(TRAFFIC, request, policy_pb2.TrafficPolicy)
        return policy_pb2.ListTrafficPoliciesResponse(
            policies=found, next_page_token=token, total_size=total
        )

    async def DeleteTrafficPolicy(
        self, request: policy_pb2.DeleteTrafficPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.DeleteTrafficPolicyResponse:
        await self.policies.delete(TRAFFIC, request.policy_id)
        return policy_pb2.DeleteTrafficPolicyResponse()

    async def CreateSecurityPolicy(
        self, request: policy_pb2.CreateSecurityPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.CreateSecurityPolicyResponse:
        policy = await self.policies.create(
            SECURITY, request, policy_pb2.SecurityPolicy, current_principal()
        )
        return policy_pb2.CreateSecurityPolicyResponse(policy=policy)

    async def ListSecurityPolicies(
        self, request: policy_pb2.ListSecurityPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ListSecurityPoliciesResponse:
        found, token, total = await self._list(SECURITY, request, policy_pb2.SecurityPolicy)
        return policy_pb2.ListSecurityPoliciesResponse(
            policies=found, next_page_token=token, total_size=total
        )

    async def DeleteSecurityPolicy(
        self, request: policy_pb2.DeleteSecurityPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.DeleteSecurityPolicyResponse:
        await self.policies.delete(SECURITY, request.policy_id)
        return policy_pb2.DeleteSecurityPolicyResponse()

    async def UpdateCircuitBreaker(
        self, request: policy_pb2.UpdateCircuitBreakerRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.UpdateCircuitBreakerResponse:
        breaker = await self.policies.update_breaker(
            request.service_name, request.config, current_principal()
        )
        return policy_pb2.UpdateCircuitBreakerResponse(circuit_breaker=breaker)

    async def UpdateMtlsConfig(
        self, request: policy_pb2.UpdateMtlsConfigRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.UpdateMtlsConfigResponse:
        when = await self.policies.update_mtls(request.config)
        return policy_pb2.UpdateMtlsConfigResponse(
            config=request.config, update_time=timestamp(when)
        )

    async def GetPlanePolicy(
        self, request: policy_pb2.GetPlanePolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.GetPlanePolicyResponse:
        view = await self.policies.plane_view()
        plane = self.policies.plane
        response = policy_pb2.GetPlanePolicyResponse(
            version=view.version,
            allow_same_plane=True,
            rules=[convert.plane_rule(r) for r in plane.allows],
            denials=[convert.plane_rule(r) for r in plane.denials],
            circuit_breakers=view.breakers,
        )
        if view.mtls is not None:
            response.mtls.CopyFrom(view.mtls.value)
            response.update_time.CopyFrom(timestamp(view.mtls.updated_at))
        return response
