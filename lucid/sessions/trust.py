"""Trust policies (spec 01 §2, §3): a user's ordered allow/deny rules, at most 50 per
user. Users manage their own; admins (PERMISSION_MANAGE_TRUST_POLICIES) anyone's."""

from __future__ import annotations

import grpc

from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime import paging
from lucid.runtime.authz import role_has
from lucid.runtime.context import current_principal
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.sessions import convert
from lucid.sessions.repository import Doc, Repository
from lucid.sessions.v1 import trust_pb2, trust_pb2_grpc

MAX_POLICIES_PER_USER = 50


def _manager() -> tuple[str, bool]:
    """The caller's user id and whether they may manage anyone's policies."""
    principal = current_principal()
    user = principal.user
    if user is None:
        return "", True  # an allowed service (admin cluster)
    return user.user_id, role_has(user.role, access_pb2.PERMISSION_MANAGE_TRUST_POLICIES)


class TrustPolicyServicer(trust_pb2_grpc.TrustPolicyServiceServicer):
    """CRUD of trust policies."""

    def __init__(self, repo: Repository, clock: Clock) -> None:
        self.repo = repo
        self.clock = clock

    def _owner(self, requested: str) -> str:
        user_id, manager = _manager()
        if requested and requested != user_id and not manager:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "only admins manage other users' trust policies",
                metadata={"required_permission": "manage_trust_policies"},
            )
        owner = requested or user_id
        if not owner:
            raise LucidError(ErrorCode.ERROR_CODE_MISSING_FIELD, "name the policy owner")
        return owner

    async def _policy(self, policy_id: str) -> Doc:
        doc = await self.repo.policy(policy_id)
        user_id, manager = _manager()
        if doc is None or not (manager or doc["owner_user_id"] == user_id):
            raise not_found(f"trust policy {policy_id}")
        return doc

    async def ListTrustPolicies(
        self, request: trust_pb2.ListTrustPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> trust_pb2.ListTrustPoliciesResponse:
        owner = self._owner(request.owner_user_id)
        page = paging.page(request, scope=owner)
        docs, total = await self.repo.list_policies(owner, page.offset, page.size)
        return trust_pb2.ListTrustPoliciesResponse(
            policies=[convert.policy(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    async def GetTrustPolicy(
        self, request: trust_pb2.GetTrustPolicyRequest, context: grpc.aio.ServicerContext
    ) -> trust_pb2.GetTrustPolicyResponse:
        return trust_pb2.GetTrustPolicyResponse(
            policy=convert.policy(await self._policy(request.policy_id))
        )

    async def CreateTrustPolicy(
        self, request: trust_pb2.CreateTrustPolicyRequest, context: grpc.aio.ServicerContext
    ) -> trust_pb2.CreateTrustPolicyResponse:
        owner = self._owner(request.owner_user_id)
        if await self.repo.count_policies(owner) >= MAX_POLICIES_PER_USER:
            raise LucidError(
                ErrorCode.ERROR_CODE_QUOTA_EXCEEDED,
                f"a user holds at most {MAX_POLICIES_PER_USER} trust policies",
            )
        now = self.clock.now()
        doc: Doc = {
            "_id": new_id(),
            "owner_user_id": owner,
            "name": request.name,
            "description": request.description,
            "rules": [convert.rule_fields(r) for r in request.rules],
            "enabled": request.enabled,
            "created_at": now,
            "updated_at": now,
        }
        await self.repo.insert_policy(doc)
        return trust_pb2.CreateTrustPolicyResponse(policy=convert.policy(doc))

    async def UpdateTrustPolicy(
        self, request: trust_pb2.UpdateTrustPolicyRequest, context: grpc.aio.ServicerContext
    ) -> trust_pb2.UpdateTrustPolicyResponse:
        await self._policy(request.policy_id)
        doc = await self.repo.replace_policy(
            request.policy_id,
            {
                "name": request.name,
                "description": request.description,
                "rules": [convert.rule_fields(r) for r in request.rules],
                "enabled": request.enabled,
                "updated_at": self.clock.now(),
            },
        )
        if doc is None:
            raise not_found(f"trust policy {request.policy_id}")
        return trust_pb2.UpdateTrustPolicyResponse(policy=convert.policy(doc))

    async def DeleteTrustPolicy(
        self, request: trust_pb2.DeleteTrustPolicyRequest, context: grpc.aio.ServicerContext
    ) -> trust_pb2.DeleteTrustPolicyResponse:
        await self._policy(request.policy_id)
        await self.repo.delete_policy(request.policy_id)
        return trust_pb2.DeleteTrustPolicyResponse()
