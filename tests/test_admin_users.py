"""CreateUser and UpdateUser over gRPC, carried out by auth: a super admin creates a user
for a TRON address (who then signs in with it), changes a real user's Lucid role,
username and e-mail, suspends and bans the account (a ban is final and refuses sign-in);
a taken name, a role above the caller's or an unknown console role changes nothing; an
unknown user is not found; users and node operators are refused, admins may not raise
anyone above their own rank (auth's rule)."""

from __future__ import annotations

import uuid

import grpc
from tronpy.keys import PrivateKey

from lucid.admin.v1 import admin_pb2, admin_pb2_grpc
from lucid.common.v1 import access_pb2
from tests.admin_support import AdminEnv, admin_fixture, refused
from tests.auth_support import address_of, auth_client
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


def name() -> str:
    return f"u_{uuid.uuid4().hex[:12]}"


async def test_username_email_and_a_final_ban_are_carried_out_by_auth(admin: AdminEnv) -> None:
    key = PrivateKey.random()
    client = auth_client(admin.sessions.main.settings)
    try:
        user_id = (await client.login(key)).user.user_id
        md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
        username, email = name(), f"{name()}@example.com"
        changed = await users(admin).UpdateUser(
            A.UpdateUserRequest(user_id=user_id, username=username, email=email), metadata=md
        )
        assert (changed.user.username, changed.user.email) == (username, email)
        banned = await users(admin).UpdateUser(
            A.UpdateUserRequest(user_id=user_id, status=A.ADMIN_USER_STATUS_BANNED, reason="fraud"),
            metadata=md,
        )
        assert banned.user.status == A.ADMIN_USER_STATUS_BANNED
        error = await refused(client.login(key))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, "a banned user cannot sign in"
        for status in (A.ADMIN_USER_STATUS_ACTIVE, A.ADMIN_USER_STATUS_SUSPENDED):
            error = await refused(
                users(admin).UpdateUser(
                    A.UpdateUserRequest(user_id=user_id, status=status), metadata=md
                )
            )
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert details(error).reason == "LUCID_ERR_4003"
        now = await users(admin).UpdateUser(A.UpdateUserRequest(user_id=user_id), metadata=md)
        assert now.user.status == A.ADMIN_USER_STATUS_BANNED, "a ban is final"
    finally:
        await client.channel.close()


async def test_a_taken_username_changes_nothing(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    first, _ = await admin.totp_user()
    second, _ = await admin.totp_user()
    taken = name()
    await users(admin).UpdateUser(A.UpdateUserRequest(user_id=first, username=taken), metadata=md)
    error = await refused(
        users(admin).UpdateUser(
            A.UpdateUserRequest(
                user_id=second,
                username=taken,
                role=access_pb2.ROLE_NODE_OPERATOR,
                status=A.ADMIN_USER_STATUS_SUSPENDED,
            ),
            metadata=md,
        )
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    now = (await users(admin).UpdateUser(A.UpdateUserRequest(user_id=second), metadata=md)).user
    assert now.username != taken
    assert now.role == access_pb2.ROLE_USER
    assert now.status == A.ADMIN_USER_STATUS_ACTIVE
    error = await refused(
        users(admin).UpdateUser(A.UpdateUserRequest(user_id=str(uuid.uuid4())), metadata=md)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_create_user_for_a_tron_address_who_then_signs_in(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    roles = await admin_pb2_grpc.AdminRbacServiceStub(admin.channel).ListRoles(
        A.ListRolesRequest(page_size=50), metadata=md
    )
    operator_role = next(r.role_id for r in roles.roles if r.name == "operator")
    key = PrivateKey.random()
    username, email = name(), f"{name()}@Example.com"
    created = await users(admin).CreateUser(
        A.CreateUserRequest(
            tron_address=address_of(key),
            username=username,
            email=email,
            role=access_pb2.ROLE_NODE_OPERATOR,
            console_role_id=operator_role,
        ),
        metadata=md,
    )
    user = created.user
    assert user.tron_address == address_of(key)
    assert (user.username, user.email) == (username, email.lower())
    assert user.role == access_pb2.ROLE_NODE_OPERATOR
    assert user.status == A.ADMIN_USER_STATUS_ACTIVE
    assert user.console_role_id == operator_role
    client = auth_client(admin.sessions.main.settings)
    try:
        login = await client.login(key)
    finally:
        await client.channel.close()
    assert login.user.user_id == user.user_id
    assert login.user.role == access_pb2.ROLE_NODE_OPERATOR

    again = await refused(
        users(admin).CreateUser(
            A.CreateUserRequest(tron_address=address_of(key), role=access_pb2.ROLE_USER),
            metadata=md,
        )
    )
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS
    taken = await refused(
        users(admin).CreateUser(
            A.CreateUserRequest(
                tron_address=address_of(PrivateKey.random()),
                username=username,
                role=access_pb2.ROLE_USER,
            ),
            metadata=md,
        )
    )
    assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details(taken).field_violations[0].field == "username"


async def test_a_refused_create_makes_no_user(admin: AdminEnv) -> None:
    address = address_of(PrivateKey.random())
    request = A.CreateUserRequest(tron_address=address, role=access_pb2.ROLE_SUPER_ADMIN)
    admin_md = await admin.md(access_pb2.ROLE_ADMIN)
    error = await refused(users(admin).CreateUser(request, metadata=admin_md))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, "at most one's own role"
    unknown_role = A.CreateUserRequest(
        tron_address=address, role=access_pb2.ROLE_USER, console_role_id=str(uuid.uuid4())
    )
    super_md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    error = await refused(users(admin).CreateUser(unknown_role, metadata=super_md))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    for bad in (
        A.CreateUserRequest(tron_address="T123", role=access_pb2.ROLE_USER),
        A.CreateUserRequest(tron_address=address),
        A.CreateUserRequest(tron_address=address, role=access_pb2.ROLE_USER, username="a b"),
    ):
        error = await refused(users(admin).CreateUser(bad, metadata=super_md))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    for role in (access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR):
        error = await refused(
            users(admin).CreateUser(
                A.CreateUserRequest(tron_address=address, role=access_pb2.ROLE_USER),
                metadata=await admin.md(role),
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # Nothing was made: the address is still free for the super admin.
    made = await users(admin).CreateUser(
        A.CreateUserRequest(tron_address=address, role=access_pb2.ROLE_ADMIN), metadata=super_md
    )
    assert made.user.role == access_pb2.ROLE_ADMIN
    assert made.user.console_role_id == ""


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
