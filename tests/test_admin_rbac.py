"""Console roles over gRPC (spec 06 §7 check 14): system roles exist and cannot be
deleted or changed; custom roles are created, updated, assigned, deleted and audited;
only super admins manage them."""

from __future__ import annotations

import uuid

import grpc

from lucid.admin.v1 import admin_pb2, admin_pb2_grpc, audit_pb2
from lucid.common.v1 import access_pb2
from tests.admin_support import AdminEnv, admin_fixture, refused

A = admin_pb2
P = admin_pb2.ConsolePermission


admin = admin_fixture()


def rbac(admin: AdminEnv) -> admin_pb2_grpc.AdminRbacServiceStub:
    return admin_pb2_grpc.AdminRbacServiceStub(admin.channel)


async def roles_by_name(admin: AdminEnv) -> dict[str, A.ConsoleRole]:
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    reply = await rbac(admin).ListRoles(A.ListRolesRequest(page_size=100), metadata=md)
    return {r.name: r for r in reply.roles}


async def test_system_roles_exist_and_cannot_be_deleted_or_changed(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    roles = await roles_by_name(admin)
    assert {"super_admin", "admin", "operator", "read_only"} <= set(roles)
    assert all(roles[n].is_system for n in ("super_admin", "admin", "operator", "read_only"))
    assert P.CONSOLE_PERMISSION_EMERGENCY_CONTROL in roles["super_admin"].permissions
    assert P.CONSOLE_PERMISSION_EMERGENCY_CONTROL not in roles["admin"].permissions
    error = await refused(
        rbac(admin).DeleteRole(A.DeleteRoleRequest(role_id=roles["admin"].role_id), metadata=md)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = await refused(
        rbac(admin).UpdateRole(
            A.UpdateRoleRequest(role_id=roles["operator"].role_id, description="x"), metadata=md
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await roles_by_name(admin))["admin"] == roles["admin"]
    perms = await rbac(admin).ListConsolePermissions(A.ListConsolePermissionsRequest(), metadata=md)
    assert len(perms.permissions) == len(P.values()) - 1


async def test_custom_role_life_cycle(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    created = (
        await rbac(admin).CreateRole(
            A.CreateRoleRequest(
                name="night_shift",
                description="watches sessions",
                permissions=[P.CONSOLE_PERMISSION_SESSIONS_READ],
            ),
            metadata=md,
        )
    ).role
    assert not created.is_system
    error = await refused(
        rbac(admin).CreateRole(
            A.CreateRoleRequest(name="night_shift", permissions=[P.CONSOLE_PERMISSION_AUDIT_READ]),
            metadata=md,
        )
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    error = await refused(
        rbac(admin).CreateRole(A.CreateRoleRequest(name="empty_role"), metadata=md)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    updated = (
        await rbac(admin).UpdateRole(
            A.UpdateRoleRequest(
                role_id=created.role_id,
                description="watches and ends sessions",
                permissions=[
                    P.CONSOLE_PERMISSION_SESSIONS_READ,
                    P.CONSOLE_PERMISSION_SESSIONS_TERMINATE,
                ],
            ),
            metadata=md,
        )
    ).role
    assert list(updated.permissions) == [
        P.CONSOLE_PERMISSION_SESSIONS_READ,
        P.CONSOLE_PERMISSION_SESSIONS_TERMINATE,
    ]
    user_id = str(uuid.uuid4())
    assigned = await rbac(admin).AssignConsoleRole(
        A.AssignConsoleRoleRequest(user_id=user_id, role_id=created.role_id), metadata=md
    )
    assert assigned.role.user_count == 1
    held = await refused(
        rbac(admin).DeleteRole(A.DeleteRoleRequest(role_id=created.role_id), metadata=md)
    )
    assert held.code() == grpc.StatusCode.FAILED_PRECONDITION
    still = await rbac(admin).GetRole(A.GetRoleRequest(role_id=created.role_id), metadata=md)
    assert still.role.user_count == 1  # refused: nothing changed
    await rbac(admin).AssignConsoleRole(
        A.AssignConsoleRoleRequest(user_id=user_id, role_id=""), metadata=md
    )
    await rbac(admin).DeleteRole(A.DeleteRoleRequest(role_id=created.role_id), metadata=md)
    error = await refused(
        rbac(admin).GetRole(A.GetRoleRequest(role_id=created.role_id), metadata=md)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    entries = await admin.audit.QueryAuditLogs(
        audit_pb2.QueryAuditLogsRequest(resource=audit_pb2.AUDIT_RESOURCE_ROLE, page_size=100),
        metadata=md,
    )
    actions = [e.action for e in entries.entries if e.resource_id == created.role_id]
    assert sorted(actions) == sorted(
        [
            audit_pb2.AUDIT_ACTION_CREATE,
            audit_pb2.AUDIT_ACTION_UPDATE,
            audit_pb2.AUDIT_ACTION_UPDATE,
            audit_pb2.AUDIT_ACTION_DELETE,
        ]
    )


async def test_admins_may_not_manage_roles(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_ADMIN)
    for call in (
        rbac(admin).ListRoles(A.ListRolesRequest(), metadata=md),
        rbac(admin).CreateRole(
            A.CreateRoleRequest(name="sneaky", permissions=[P.CONSOLE_PERMISSION_AUDIT_READ]),
            metadata=md,
        ),
    ):
        assert (await refused(call)).code() == grpc.StatusCode.PERMISSION_DENIED
    assert "sneaky" not in await roles_by_name(admin)
