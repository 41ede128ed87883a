"""GetMe over gRPC: the signed-in administrator as auth knows them, the console role
they hold (assigned, else the system role of their Lucid role) and their live step-up;
users and node operators are refused."""

from __future__ import annotations

import grpc
import pyotp

from lucid.admin.v1 import admin_pb2, admin_pb2_grpc
from lucid.common.v1 import access_pb2
from tests.admin_support import AdminEnv, admin_fixture, refused

A = admin_pb2
P = admin_pb2.ConsolePermission

admin = admin_fixture()


async def test_me_shows_profile_console_role_and_step_up(admin: AdminEnv) -> None:
    user_id, secret = await admin.totp_user()
    md = await admin.md(access_pb2.ROLE_ADMIN, user_id)
    me = await admin.stub_auth.GetMe(A.GetMeRequest(), metadata=md)
    assert me.user_id == user_id
    assert me.tron_address.startswith("T") and len(me.tron_address) == 34
    assert me.role == access_pb2.ROLE_ADMIN
    assert me.totp_enabled
    assert me.console_role.name == "admin" and me.console_role.is_system
    assert P.CONSOLE_PERMISSION_SESSIONS_TERMINATE in me.permissions
    assert P.CONSOLE_PERMISSION_EMERGENCY_CONTROL not in me.permissions
    assert not me.HasField("step_up_expire_time")

    stepped = await admin.stub_auth.StepUp(
        A.StepUpRequest(code=pyotp.TOTP(secret).now()), metadata=md
    )
    me = await admin.stub_auth.GetMe(A.GetMeRequest(), metadata=md)
    assert abs(me.step_up_expire_time.seconds - stepped.expire_time.seconds) <= 2


async def test_an_assigned_console_role_wins(admin: AdminEnv) -> None:
    user_id, _ = await admin.totp_user()
    super_md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    rbac = admin_pb2_grpc.AdminRbacServiceStub(admin.channel)
    roles = await rbac.ListRoles(A.ListRolesRequest(page_size=100), metadata=super_md)
    read_only = next(r for r in roles.roles if r.name == "read_only")
    await rbac.AssignConsoleRole(
        A.AssignConsoleRoleRequest(user_id=user_id, role_id=read_only.role_id), metadata=super_md
    )
    me = await admin.stub_auth.GetMe(
        A.GetMeRequest(), metadata=await admin.md(access_pb2.ROLE_ADMIN, user_id)
    )
    assert me.console_role.role_id == read_only.role_id
    assert me.console_role.user_count >= 1
    assert set(me.permissions) == set(read_only.permissions)


async def test_users_and_node_operators_are_refused(admin: AdminEnv) -> None:
    user_id, _ = await admin.totp_user()
    for role in (access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR):
        error = await refused(
            admin.stub_auth.GetMe(A.GetMeRequest(), metadata=await admin.md(role, user_id))
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
