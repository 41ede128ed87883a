"""``lucid.admin.v1.AdminUserService``: users from the console, through auth.

CreateUser and UpdateUser (username, e-mail, role, status including a final ban)."""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.users import NewUser, UserChange, Users
from lucid.admin.v1 import admin_pb2, admin_pb2_grpc
from lucid.runtime.audit import client_of


class AdminUserServicer(admin_pb2_grpc.AdminUserServiceServicer):
    """New users, and a user's profile, role and status."""

    def __init__(self, users: Users) -> None:
        self.users = users

    async def CreateUser(
        self, request: admin_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CreateUserResponse:
        new = NewUser(
            tron_address=request.tron_address,
            username=request.username,
            email=request.email,
            role=request.role,
            console_role_id=request.console_role_id,
        )
        user = await self.users.create(new, client_of(context))
        return admin_pb2.CreateUserResponse(user=convert.admin_user(user))

    async def UpdateUser(
        self, request: admin_pb2.UpdateUserRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.UpdateUserResponse:
        change = UserChange(
            user_id=request.user_id,
            username=request.username,
            email=request.email,
            role=request.role,
            status=convert.stored(admin_pb2.AdminUserStatus, "ADMIN_USER_STATUS_", request.status),
            reason=request.reason,
        )
        user = await self.users.update(change, client_of(context))
        return admin_pb2.UpdateUserResponse(user=convert.admin_user(user))
