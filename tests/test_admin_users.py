"""UpdateUser over gRPC, carried out by auth: a super admin changes a real user's Lucid
role and suspends the account; what auth cannot do (another user's username or e-mail,
a ban) is refused with nothing changed; an unknown user is not found; users and node
operators are refused, admins may not raise anyone above their own rank (auth's rule)."""

from __future__ import annotations

import uuid

import grpc

from lucid.admin.v1 import admin_pb2, admin_pb2_grpc
from lucid.common.v1 import access_pb2
from tests.admin_support import AdminEnv, admin_fixture, refused
from tests.support import details

A = admin_pb2
admin = admin_fixture()


def users(admin: AdminEnv) -> admin_pb2_grpc.AdminUserServiceStub:
    return admin_pb2_grpc.AdminUserServiceStub(admin.channel)


async def test_role_and_status_are_changed_at_auth(admin: AdminEnv) -> None:
    user_id, _ = await admin.totp_user()
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    before = (await users(admin).UpdateUser(A.UpdateUserRequest(user_id=user_id), metadata=md)).user
    assert before.role == access_pb2.ROLE_USER
    assert before.status == A.ADMIN_USER_STATUS_ACTIVE
    assert before.tron_address.startswith("T")

    changed = await users(admin).UpdateUser(
        A.UpdateUserRequest(user_id=user_id, role=access_pb2.ROLE_NODE_OPERATOR), metadata=md
    )
    assert changed.user.role == access_pb2.ROLE_NODE_OPERATOR
    suspended = await users(admin).UpdateUser(
        A.UpdateUserRequest(
            user_id=user_id, status=A.ADMIN_USER_STATUS_SUSPENDED, reason="abuse report"
        ),
        metadata=md,
    )
    assert suspended.user.status == A.ADMIN_USER_STATUS_SUSPENDED
    assert suspended.user.role == access_pb2.ROLE_NODE_OPERATOR


async def test_what_auth_cannot_do_is_refused_unchanged(admin: AdminEnv) -> None:
    user_id, _ = await admin.totp_user()
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    for request in (
        A.UpdateUserRequest(user_id=user_id, username="new_name", role=access_pb2.ROLE_ADMIN),
        A.UpdateUserRequest(user_id=user_id, email="a@example.com"),
        A.UpdateUserRequest(user_id=user_id, status=A.ADMIN_USER_STATUS_BANNED),
    ):
        error = await refused(users(admin).UpdateUser(request, metadata=md))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(error).reason == "LUCID_ERR_1001"
    now = (await users(admin).UpdateUser(A.UpdateUserRequest(user_id=user_id), metadata=md)).user
    assert now.role == access_pb2.ROLE_USER
    assert now.status == A.ADMIN_USER_STATUS_ACTIVE
    error = await refused(
        users(admin).UpdateUser(A.UpdateUserRequest(user_id=str(uuid.uuid4())), metadata=md)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_users_and_operators_are_refused_admins_within_their_rank(
    admin: AdminEnv,
) -> None:
    user_id, _ = await admin.totp_user()
    operator = A.UpdateUserRequest(user_id=user_id, role=access_pb2.ROLE_NODE_OPERATOR)
    for role in (access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR):
        error = await refused(users(admin).UpdateUser(operator, metadata=await admin.md(role)))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    admin_md = await admin.md(access_pb2.ROLE_ADMIN)
    error = await refused(
        users(admin).UpdateUser(
            A.UpdateUserRequest(user_id=user_id, role=access_pb2.ROLE_SUPER_ADMIN),
            metadata=admin_md,
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, "auth: no one above their rank"
    done = await users(admin).UpdateUser(operator, metadata=admin_md)
    assert done.user.role == access_pb2.ROLE_NODE_OPERATOR
