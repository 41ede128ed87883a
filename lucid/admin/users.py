"""Users from the console (CreateUser, UpdateUser), carried out by auth, the one user
store, on behalf of the administrator (its token forwarded): a new user for a TRON
address with CreateUser, a username or e-mail with SetUserProfile, the Lucid role with
AssignRole, the account status (active, suspended, banned — a ban is final) with
SetUserStatus. What would be refused is checked before anything changes (the caller's
rank, a banned user's status, an unknown console role), and the changes most likely
to be refused (a taken username or e-mail) go first. Every change is audited in
admin's chain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.clusters import call_cluster
from lucid.admin.roles import Roles
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.common.v1 import access_pb2
from lucid.runtime.audit import Client
from lucid.runtime.channels import Channels
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError
from lucid.runtime.wire import moment

STATUSES = {
    "active": auth_pb2.ACCOUNT_STATUS_ACTIVE,
    "suspended": auth_pb2.ACCOUNT_STATUS_SUSPENDED,
    "banned": auth_pb2.ACCOUNT_STATUS_BANNED,
}
ACCOUNT_STATE = {
    auth_pb2.ACCOUNT_STATUS_ACTIVE: "active",
    auth_pb2.ACCOUNT_STATUS_SUSPENDED: "suspended",
    auth_pb2.ACCOUNT_STATUS_LOCKED: "locked",
    auth_pb2.ACCOUNT_STATUS_BANNED: "banned",
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
class NewUser:
    """CreateUser's fields (username, e-mail and console role may be empty)."""

    tron_address: str
    username: str
    email: str
    role: int
    console_role_id: str


@dataclass(frozen=True)
class UserChange:
    """UpdateUser's fields (empty: unchanged)."""

    user_id: str
    username: str
    email: str
    role: int
    status: str
    reason: str


def _refused(code: ErrorCode.ValueType, message: str, field: str, why: str) -> LucidError:
    return LucidError(code, message, field_violations=[FieldViolation(field, why)])


class Users:
    """CreateUser and UpdateUser."""

    def __init__(self, channels: Channels, roles: Roles, audit: AuditLog) -> None:
        self._channels = channels
        self.roles = roles
        self.audit = audit

    async def _auth(self, method: str, request: object, token: str) -> auth_pb2.User:
        stub_type = auth_pb2_grpc.AuthServiceStub
        reply = await call_cluster(self._channels, "auth", stub_type, method, request, token=token)
        user: auth_pb2.User = reply.user
        return user

    async def create(self, new: NewUser, client: Client) -> UserView:
        """A user made at auth for a TRON address, with a console role if asked."""
        if new.console_role_id:
            await self.roles.get(new.console_role_id)  # NOT_FOUND before anything is made
        request = auth_pb2.CreateUserRequest(
            tron_address=new.tron_address,
            username=new.username,
            email=new.email,
            role=access_pb2.Role.ValueType(new.role),
        )
        user = await self._auth("CreateUser", request, client.principal.token)
        if new.console_role_id:
            await self.roles.assign(user.user_id, new.console_role_id, client)
        await self.audit.record(
            NewEntry.of(
                client,
                action="create",
                resource="user",
                resource_id=user.user_id,
                details={
                    "tron_address": new.tron_address,
                    "role": access_pb2.Role.Name(access_pb2.Role.ValueType(new.role))
                    .removeprefix("ROLE_")
                    .lower(),
                    "console_role_id": new.console_role_id,
                },
                severity="warning",
                risk_level="high",
            )
        )
        return await self._view(user)

    def _precheck(self, change: UserChange, user: auth_pb2.User, client: Client) -> None:
        """What auth would refuse part-way, refused before anything changes."""
        caller = client.principal.user
        caller_role = caller.role if caller else access_pb2.ROLE_SUPER_ADMIN
        denied = ErrorCode.ERROR_CODE_PERMISSION_DENIED
        if user.role > caller_role:
            raise LucidError(denied, "you cannot change a user above your own role")
        if change.role > caller_role:
            raise _refused(denied, "you can grant at most your own role", "role", "too high")
        if not change.status:
            return
        if caller is not None and caller.user_id == user.user_id:
            raise _refused(
                ErrorCode.ERROR_CODE_NOT_ALLOWED,
                "you cannot change your own status",
                "status",
                "own account",
            )
        if user.status == auth_pb2.ACCOUNT_STATUS_BANNED:
            raise _refused(
                ErrorCode.ERROR_CODE_NOT_ALLOWED,
                "the user is banned; a ban is final",
                "status",
                "banned for good",
            )

    async def update(self, change: UserChange, client: Client) -> UserView:
        """Applies the profile, role and status changes at auth."""
        if change.status and change.status not in STATUSES:
            raise _refused(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                "this change cannot be made; nothing was changed",
                "status",
                "only active, suspended or banned can be set",
            )
        token = client.principal.token
        user = await self._auth("GetUser", auth_pb2.GetUserRequest(user_id=change.user_id), token)
        self._precheck(change, user, client)
        if change.username or change.email:
            profile = auth_pb2.SetUserProfileRequest(
                user_id=change.user_id, username=change.username, email=change.email
            )
            user = await self._auth("SetUserProfile", profile, token)
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
                details={
                    "username": change.username,
                    "email": change.email,
                    "role": change.role,
                    "status": change.status,
                    "reason": change.reason,
                },
                severity="critical" if change.status == "banned" else "warning",
                risk_level="high",
            )
        )
        return await self._view(user)

    async def _view(self, user: auth_pb2.User) -> UserView:
        return UserView(
            user_id=user.user_id,
            tron_address=user.tron_address,
            username=user.username,
            email=user.email,
            role=int(user.role),
            status=ACCOUNT_STATE.get(user.status, ""),
            kyc_status=int(user.kyc_status),
            console_role_id=await self.roles.role_of(user.user_id),
            created_at=moment(user.create_time) if user.HasField("create_time") else None,
            last_login_at=moment(user.last_login_time)
            if user.HasField("last_login_time")
            else None,
        )
