"""``lucid.admin.v1.AdminRbacService``: console roles and their assignment."""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.roles import Roles
from lucid.admin.v1 import admin_pb2, admin_pb2_grpc
from lucid.runtime.audit import client_of
from lucid.runtime.paging import page


class AdminRbacServicer(admin_pb2_grpc.AdminRbacServiceServicer):
    """Role CRUD, permissions and assignment."""

    def __init__(self, roles: Roles) -> None:
        self.roles = roles

    async def _shown(self, role_id: str) -> admin_pb2.ConsoleRole:
        role = await self.roles.get(role_id)
        return convert.console_role(role, await self.roles.holders(role_id))

    async def ListRoles(
        self, request: admin_pb2.ListRolesRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListRolesResponse:
        window = page(request)
        roles, total = await self.roles.page(window.offset, window.size)
        shown = [convert.console_role(r, await self.roles.holders(r.role_id)) for r in roles]
        return admin_pb2.ListRolesResponse(
            roles=shown, next_page_token=window.next_token(len(roles), total), total_size=total
        )

    async def GetRole(
        self, request: admin_pb2.GetRoleRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.GetRoleResponse:
        return admin_pb2.GetRoleResponse(role=await self._shown(request.role_id))

    async def CreateRole(
        self, request: admin_pb2.CreateRoleRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CreateRoleResponse:
        role = await self.roles.create(
            request.name,
            request.description,
            convert.permission_names(request.permissions),
            client_of(context),
        )
        return admin_pb2.CreateRoleResponse(role=convert.console_role(role, 0))

    async def UpdateRole(
        self, request: admin_pb2.UpdateRoleRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.UpdateRoleResponse:
        role = await self.roles.update(
            request.role_id,
            request.description,
            convert.permission_names(request.permissions),
            client_of(context),
        )
        users = await self.roles.holders(role.role_id)
        return admin_pb2.UpdateRoleResponse(role=convert.console_role(role, users))

    async def DeleteRole(
        self, request: admin_pb2.DeleteRoleRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DeleteRoleResponse:
        await self.roles.delete(request.role_id, client_of(context))
        return admin_pb2.DeleteRoleResponse()

    async def ListConsolePermissions(
        self, request: admin_pb2.ListConsolePermissionsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListConsolePermissionsResponse:
        return admin_pb2.ListConsolePermissionsResponse(permissions=convert.permission_infos())

    async def AssignConsoleRole(
        self, request: admin_pb2.AssignConsoleRoleRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.AssignConsoleRoleResponse:
        role = await self.roles.assign(request.user_id, request.role_id, client_of(context))
        shown = await self._shown(role.role_id) if role else None
        return admin_pb2.AssignConsoleRoleResponse(user_id=request.user_id, role=shown)
