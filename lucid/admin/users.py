"""Changing a user from the console (UpdateUser), carried out by auth, the one user
store, on behalf of the administrator (its token forwarded): the Lucid role with
AssignRole, the account status (active or suspended) with SetUserStatus. Auth has no
rpc to change another user's username or e-mail, nor a ban, so those are refused
before anything changes. Every change is audited in admin's chain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.clusters import call_cluster
from lucid.admin.store.roles import RoleStore
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.common.v1 import access_pb2
from lucid.runtime.audit import Client
from lucid.runtime.channels import Channels
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError
from lucid.runtime.wire import moment

STATUSES = {
    "active": auth_pb2.ACCOUNT_STATUS_ACTIVE,
    "suspended": auth_pb2.ACCOUNT_STATUS_SUSPENDED,
}
ACCOUNT_STATE = {
    auth_pb2.ACCOUNT_STATUS_ACTIVE: "active",
    auth_pb2.ACCOUNT_STATUS_SUSPENDED: "suspended",
    auth_pb2.ACCOUNT_STATUS_LOCKED: "locked",
}


@dataclass(frozen=True)
class UserView:
    """What admin shows of a user."""

    user_id: str
    tron_address: str
    username: str
    email: str
    role: int
    status: str
    kyc_status: int
    console_role_id: str
    created_at: datetime | None
    last_login_at: datetime | None


@dataclass(frozen=True)
class UserChange:
    """UpdateUser's fields (empty: unchanged)."""

    user_id: str
    username: str
    email: str
    role: int
    status: str
    reason: str


class Users:
    """UpdateUser."""

    def __init__(self, channels: Channels, roles: RoleStore, audit: AuditLog) -> None:
        self._channels = channels
        self.roles = roles
        self.audit = audit

    async def _auth(self, method: str, request: object, token: str) -> auth_pb2.User:
        stub_type = auth_pb2_grpc.AuthServiceStub
        reply = await call_cluster(self._channels, "auth", stub_type, method, request, token=token)
        user: auth_pb2.User = reply.user
        return user

    async def update(self, change: UserChange, client: Client) -> UserView:
        """Applies the role and status changes at auth; refuses what auth cannot do."""
        refused = [
            FieldViolation(name, "auth offers no way to change another user's " + name)
            for name, value in (("username", change.username), ("email", change.email))
            if value
        ]
        if change.status and change.status not in STATUSES:
            refused.append(FieldViolation("status", "only active or suspended can be set"))
        if refused:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                "this change cannot be made; nothing was changed",
                field_violations=refused,
            )
        token = client.principal.token
        user = await self._auth("GetUser", auth_pb2.GetUserRequest(user_id=change.user_id), token)
        if change.role:
            request = auth_pb2.AssignRoleRequest(
                user_id=change.user_id, role=access_pb2.Role.ValueType(change.role)
            )
            user = await self._auth("AssignRole", request, token)
        if change.status:
            status = auth_pb2.SetUserStatusRequest(
                user_id=change.user_id, status=STATUSES[change.status], reason=change.reason
            )
            user = await self._auth("SetUserStatus", status, token)
        await self.audit.record(
            NewEntry.of(
                client,
                action="update",
                resource="user",
                resource_id=change.user_id,
                details={"role": change.role, "status": change.status, "reason": change.reason},
                severity="warning",
                risk_level="high",
            )
        )
        return UserView(
            user_id=user.user_id,
            tron_address=user.tron_address,
            username=user.username,
            email=user.email,
            role=int(user.role),
            status=ACCOUNT_STATE.get(user.status, ""),
            kyc_status=int(user.kyc_status),
            console_role_id=await self.roles.role_of(user.user_id) or "",
            created_at=moment(user.create_time) if user.HasField("create_time") else None,
            last_login_at=moment(user.last_login_time)
            if user.HasField("last_login_time")
            else None,
        )
