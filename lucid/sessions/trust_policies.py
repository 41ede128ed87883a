"""Trust policies (spec 01 §2, §3): a user's ordered allow/deny rules, at most 50 per
user. Users manage their own; admins (PERMISSION_MANAGE_TRUST_POLICIES) anyone's."""

from __future__ import annotations

from typing import Any

from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.authz import role_has
from lucid.runtime.context import Principal
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.sessions.store.repository import Doc, Repository

MAX_POLICIES_PER_USER = 50


def _manager(caller: Principal) -> tuple[str, bool]:
    """The caller's user id and whether they may manage anyone's policies."""
    user = caller.user
    if user is None:
        return "", True  # an allowed service (admin cluster)
    return user.user_id, role_has(user.role, access_pb2.PERMISSION_MANAGE_TRUST_POLICIES)


class TrustPolicies:
    """CRUD of trust policies with their ownership rules."""

    def __init__(self, repo: Repository, clock: Clock) -> None:
        self.repo = repo
        self.clock = clock

    def owner(self, caller: Principal, requested: str) -> str:
        """Whose policies an rpc acts on: the caller's, or (for managers) anyone's."""
        user_id, manager = _manager(caller)
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

    async def get(self, caller: Principal, policy_id: str) -> Doc:
        """A policy the caller may manage (others look absent)."""
        doc = await self.repo.policy(policy_id)
        user_id, manager = _manager(caller)
        if doc is None or not (manager or doc["owner_user_id"] == user_id):
            raise not_found(f"trust policy {policy_id}")
        return doc

    async def page(self, owner: str, *, offset: int, limit: int) -> tuple[list[Doc], int]:
        """A page of an owner's policies, oldest first, and how many there are."""
        return await self.repo.list_policies(owner, offset, limit)

    async def create(self, owner: str, fields: dict[str, Any]) -> Doc:
        """A new policy of ``owner``; QUOTA_EXCEEDED past 50."""
        if await self.repo.count_policies(owner) >= MAX_POLICIES_PER_USER:
            raise LucidError(
                ErrorCode.ERROR_CODE_QUOTA_EXCEEDED,
                f"a user holds at most {MAX_POLICIES_PER_USER} trust policies",
            )
        now = self.clock.now()
        doc: Doc = {
            "_id": new_id(),
            "owner_user_id": owner,
            **fields,
            "created_at": now,
            "updated_at": now,
        }
        await self.repo.insert_policy(doc)
        return doc

    async def update(self, caller: Principal, policy_id: str, fields: dict[str, Any]) -> Doc:
        """Replaces a policy's name, description, rules and switch."""
        await self.get(caller, policy_id)
        doc = await self.repo.replace_policy(policy_id, {**fields, "updated_at": self.clock.now()})
        if doc is None:
            raise not_found(f"trust policy {policy_id}")
        return doc

    async def delete(self, caller: Principal, policy_id: str) -> None:
        """Deletes a policy the caller may manage."""
        await self.get(caller, policy_id)
        await self.repo.delete_policy(policy_id)
