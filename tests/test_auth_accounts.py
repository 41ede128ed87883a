"""Accounts: spec 09 §7 checks 12 to 14, KYC gates across clusters, suspension, profiles,
users, permissions and the audit log."""

from __future__ import annotations

import uuid

import grpc
import pytest
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.common.v1 import access_pb2
from lucid.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tronpy.keys import PrivateKey

from tests.auth_support import AuthClient, auth_client, refused
from tests.support import Mesh, bearer, details


@pytest.fixture
async def client(mesh: Mesh) -> AuthClient:
    return auth_client(mesh.settings)


async def _promote(client: AuthClient, mesh: Mesh, user_id: str, role: int) -> None:
    root = await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN)
    await client.stub.AssignRole(
        auth_pb2.AssignRoleRequest(user_id=user_id, role=role), metadata=client.md(root)
    )


async def _refreshed(client: AuthClient, reply: auth_pb2.LoginResponse) -> str:
    """A new access token of the same login session (carrying the current role and KYC)."""
    new = await client.stub.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=reply.tokens.refresh_token),
        metadata=client.md(),
    )
    reply.tokens.CopyFrom(new.tokens)
    return new.tokens.access_token


async def test_check12_assign_role_by_a_user_is_denied(client: AuthClient) -> None:
    alice = await client.login(PrivateKey.random())
    bob = await client.login(PrivateKey.random())
    error = await refused(
        client.stub.AssignRole(
            auth_pb2.AssignRoleRequest(user_id=bob.user.user_id, role=access_pb2.ROLE_ADMIN),
            metadata=client.md(alice.tokens.access_token),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(error).reason == "LUCID_ERR_2004"


async def test_check12_an_admin_cannot_grant_super_admin(client: AuthClient, mesh: Mesh) -> None:
    admin = await client.login(PrivateKey.random())
    target = await client.login(PrivateKey.random())
    await _promote(client, mesh, admin.user.user_id, access_pb2.ROLE_ADMIN)
    token = await _refreshed(client, admin)
    error = await refused(
        client.stub.AssignRole(
            auth_pb2.AssignRoleRequest(
                user_id=target.user.user_id, role=access_pb2.ROLE_SUPER_ADMIN
            ),
            metadata=client.md(token),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(error).reason == "LUCID_ERR_2004"
    # up to its own level is fine
    reply = await client.stub.AssignRole(
        auth_pb2.AssignRoleRequest(user_id=target.user.user_id, role=access_pb2.ROLE_ADMIN),
        metadata=client.md(token),
    )
    assert reply.user.role == access_pb2.ROLE_ADMIN
    # and it cannot touch someone above it
    root = await client.login(PrivateKey.random())
    await _promote(client, mesh, root.user.user_id, access_pb2.ROLE_SUPER_ADMIN)
    error = await refused(
        client.stub.AssignRole(
            auth_pb2.AssignRoleRequest(user_id=root.user.user_id, role=access_pb2.ROLE_USER),
            metadata=client.md(token),
        )
    )
    assert details(error).reason == "LUCID_ERR_2004"


async def test_demotion_revokes_the_users_sessions(client: AuthClient, mesh: Mesh) -> None:
    user = await client.login(PrivateKey.random())
    await _promote(client, mesh, user.user.user_id, access_pb2.ROLE_ADMIN)
    token = await _refreshed(client, user)
    await _promote(client, mesh, user.user.user_id, access_pb2.ROLE_USER)
    error = await refused(
        client.stub.GetProfile(auth_pb2.GetProfileRequest(), metadata=client.md(token))
    )
    assert details(error).reason == "LUCID_ERR_2008"


async def _register_node(mesh: Mesh, token: str) -> grpc.aio.AioRpcError:
    async with mesh.channel("nodes") as channel:
        return await refused(
            nodes_pb2_grpc.NodeServiceStub(channel).RegisterNode(
                nodes_pb2.RegisterNodeRequest(), metadata=bearer(token)
            )
        )


async def test_check13_register_node_needs_verified_kyc(client: AuthClient, mesh: Mesh) -> None:
    await mesh.start("nodes")
    operator = await client.login(PrivateKey.random())
    user_id = operator.user.user_id
    admin = await mesh.token(role=access_pb2.ROLE_ADMIN)
    await _promote(client, mesh, user_id, access_pb2.ROLE_NODE_OPERATOR)

    async def set_kyc(status: int) -> None:
        await client.stub.SetKycStatus(
            auth_pb2.SetKycStatusRequest(user_id=user_id, kyc_status=status),
            metadata=client.md(admin),
        )

    async def check() -> auth_pb2.CheckPermissionResponse:
        async with mesh.channel("auth", identity="nodes") as channel:
            return await auth_pb2_grpc.AuthServiceStub(channel).CheckPermission(
                auth_pb2.CheckPermissionRequest(
                    permission=access_pb2.PERMISSION_REGISTER_NODE, user_id=user_id
                )
            )

    await set_kyc(access_pb2.KYC_STATUS_PENDING)
    assert (await check()) == auth_pb2.CheckPermissionResponse(allowed=False, reason="kyc")
    error = await _register_node(mesh, await _refreshed(client, operator))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(error).reason == "LUCID_ERR_2012"

    await set_kyc(access_pb2.KYC_STATUS_VERIFIED)
    assert (await check()).allowed
    error = await _register_node(mesh, await _refreshed(client, operator))
    # past authorization: the empty request fails its field rules (or the rpc is not built)
    assert not details(error).reason.startswith("LUCID_ERR_2"), details(error)
    assert error.code() in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED}

    # KYC taken away again: the sessions carrying "verified" are revoked
    token = operator.tokens.access_token
    await set_kyc(access_pb2.KYC_STATUS_EXPIRED)
    assert details(await _register_node(mesh, token)).reason == "LUCID_ERR_2008"


async def test_check_permission_of_the_caller_and_of_others(client: AuthClient) -> None:
    alice = await client.login(PrivateKey.random())
    bob = await client.login(PrivateKey.random())
    token = alice.tokens.access_token
    mine = await client.stub.CheckPermission(
        auth_pb2.CheckPermissionRequest(permission=access_pb2.PERMISSION_CREATE_SESSION),
        metadata=client.md(token),
    )
    assert mine.allowed
    role = await client.stub.CheckPermission(
        auth_pb2.CheckPermissionRequest(permission=access_pb2.PERMISSION_MANAGE_USERS),
        metadata=client.md(token),
    )
    assert role == auth_pb2.CheckPermissionResponse(allowed=False, reason="role")
    error = await refused(
        client.stub.CheckPermission(
            auth_pb2.CheckPermissionRequest(
                permission=access_pb2.PERMISSION_CREATE_SESSION, user_id=bob.user.user_id
            ),
            metadata=client.md(token),
        )
    )
    assert details(error).reason == "LUCID_ERR_2004"


async def test_check14_session_ownership(mesh: Mesh) -> None:
    owner, observer, participant, stranger = (str(uuid.uuid4()) for _ in range(4))
    session_id = str(uuid.uuid4())
    async with mesh.channel("auth", identity="sessions") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        await stub.SetSessionOwnership(
            auth_pb2.SetSessionOwnershipRequest(
                session_id=session_id,
                owner_user_id=owner,
                participant_user_ids=[participant],
                observer_user_ids=[observer],
            )
        )

        async def allowed(user_id: str, level: int) -> bool:
            reply = await stub.VerifySessionOwnership(
                auth_pb2.VerifySessionOwnershipRequest(
                    session_id=session_id, user_id=user_id, access_level=level
                )
            )
            return reply.allowed

        full, watch = auth_pb2.ACCESS_LEVEL_FULL, auth_pb2.ACCESS_LEVEL_OBSERVER
        assert await allowed(owner, full) and await allowed(owner, watch)
        assert await allowed(participant, full)
        assert not await allowed(stranger, full) and not await allowed(stranger, watch)
        assert await allowed(observer, watch)
        assert not await allowed(observer, full)
        assert not await allowed(observer, auth_pb2.ACCESS_LEVEL_RESTRICTED)
        error = await refused(
            stub.VerifySessionOwnership(
                auth_pb2.VerifySessionOwnershipRequest(
                    session_id=str(uuid.uuid4()), user_id=owner, access_level=full
                )
            )
        )
        assert details(error).reason == "LUCID_ERR_4001"


async def test_set_session_ownership_is_for_services_only(client: AuthClient, mesh: Mesh) -> None:
    root = await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN)
    error = await refused(
        client.stub.SetSessionOwnership(
            auth_pb2.SetSessionOwnershipRequest(
                session_id=str(uuid.uuid4()), owner_user_id=str(uuid.uuid4())
            ),
            metadata=client.md(root),
        )
    )
    assert details(error).reason == "LUCID_ERR_2013"


async def test_suspension_revokes_sessions_and_refuses_sign_in(
    client: AuthClient, mesh: Mesh
) -> None:
    key = PrivateKey.random()
    user = await client.login(key)
    admin = await mesh.token(role=access_pb2.ROLE_ADMIN)

    async def set_status(status: int) -> auth_pb2.SetUserStatusResponse:
        return await client.stub.SetUserStatus(
            auth_pb2.SetUserStatusRequest(user_id=user.user.user_id, status=status, reason="t"),
            metadata=client.md(admin),
        )

    suspended = await set_status(auth_pb2.ACCOUNT_STATUS_SUSPENDED)
    assert suspended.user.status == auth_pb2.ACCOUNT_STATUS_SUSPENDED
    error = await refused(
        client.stub.GetProfile(
            auth_pb2.GetProfileRequest(), metadata=client.md(user.tokens.access_token)
        )
    )
    assert details(error).reason == "LUCID_ERR_2008"
    error = await refused(client.login(key))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(error).metadata["account_status"] == "suspended"
    await set_status(auth_pb2.ACCOUNT_STATUS_ACTIVE)
    assert (await client.login(key)).user.status == auth_pb2.ACCOUNT_STATUS_ACTIVE


async def test_profile_update_keeps_usernames_and_emails_unique(client: AuthClient) -> None:
    alice = await client.login(PrivateKey.random())
    bob = await client.login(PrivateKey.random())
    name = f"alice_{uuid.uuid4().hex[:8]}"
    updated = await client.stub.UpdateProfile(
        auth_pb2.UpdateProfileRequest(username=name, email=f"{name}@Example.org"),
        metadata=client.md(alice.tokens.access_token),
    )
    assert updated.user.username == name and updated.user.email == f"{name}@example.org"
    profile = await client.stub.GetProfile(
        auth_pb2.GetProfileRequest(), metadata=client.md(alice.tokens.access_token)
    )
    assert profile.user == updated.user
    for request in (
        auth_pb2.UpdateProfileRequest(username=name.upper()),
        auth_pb2.UpdateProfileRequest(email=f"{name}@example.org"),
    ):
        error = await refused(
            client.stub.UpdateProfile(request, metadata=client.md(bob.tokens.access_token))
        )
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    error = await refused(
        client.stub.UpdateProfile(
            auth_pb2.UpdateProfileRequest(username="x!"),
            metadata=client.md(bob.tokens.access_token),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # alice renames: the old name is free again
    await client.stub.UpdateProfile(
        auth_pb2.UpdateProfileRequest(username=name + "_2"),
        metadata=client.md(alice.tokens.access_token),
    )
    taken = await client.stub.UpdateProfile(
        auth_pb2.UpdateProfileRequest(username=name),
        metadata=client.md(bob.tokens.access_token),
    )
    assert taken.user.username == name


async def test_get_user_is_self_or_admin_or_service(client: AuthClient, mesh: Mesh) -> None:
    alice = await client.login(PrivateKey.random())
    bob = await client.login(PrivateKey.random())
    request = auth_pb2.GetUserRequest(user_id=bob.user.user_id)
    own = await client.stub.GetUser(request, metadata=client.md(bob.tokens.access_token))
    assert own.user.tron_address == bob.user.tron_address
    error = await refused(
        client.stub.GetUser(request, metadata=client.md(alice.tokens.access_token))
    )
    assert details(error).reason == "LUCID_ERR_2004"
    admin = await mesh.token(role=access_pb2.ROLE_ADMIN)
    assert (await client.stub.GetUser(request, metadata=client.md(admin))).user.user_id
    async with mesh.channel("auth", identity="payments") as channel:
        reply = await auth_pb2_grpc.AuthServiceStub(channel).GetUser(request)
    assert reply.user.user_id == bob.user.user_id
    error = await refused(
        client.stub.GetUser(
            auth_pb2.GetUserRequest(user_id=str(uuid.uuid4())), metadata=client.md(admin)
        )
    )
    assert details(error).reason == "LUCID_ERR_4001"


async def test_list_users_filters_and_pages(client: AuthClient, mesh: Mesh) -> None:
    users = [await client.login(PrivateKey.random()) for _ in range(3)]
    for reply in users:
        await _promote(client, mesh, reply.user.user_id, access_pb2.ROLE_NODE_OPERATOR)
    admin = await mesh.token(role=access_pb2.ROLE_ADMIN)
    seen: list[auth_pb2.User] = []
    token = ""
    while True:
        page = await client.stub.ListUsers(
            auth_pb2.ListUsersRequest(
                role=access_pb2.ROLE_NODE_OPERATOR, page_size=2, page_token=token
            ),
            metadata=client.md(admin),
        )
        seen += page.users
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == page.total_size >= 3
    assert all(u.role == access_pb2.ROLE_NODE_OPERATOR for u in seen)
    assert {u.user.user_id for u in users} <= {u.user_id for u in seen}
    error = await refused(
        client.stub.ListUsers(
            auth_pb2.ListUsersRequest(page_token=page.next_page_token or "eyJvIjogMn0"),
            metadata=client.md(admin),
        )
    )
    assert details(error).reason == "LUCID_ERR_1005"
    user_token = users[0].tokens.access_token
    error = await refused(
        client.stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=client.md(user_token))
    )
    assert details(error).reason == "LUCID_ERR_2004"


async def test_get_permissions_lists_matrix_and_limits(client: AuthClient) -> None:
    reply = await client.login(PrivateKey.random())
    perms = await client.stub.GetPermissions(
        auth_pb2.GetPermissionsRequest(), metadata=client.md(reply.tokens.access_token)
    )
    assert perms.role == access_pb2.ROLE_USER
    assert access_pb2.PERMISSION_CREATE_SESSION in perms.permissions
    assert access_pb2.PERMISSION_REGISTER_NODE not in perms.permissions
    assert perms.limits == auth_pb2.RoleLimits(
        max_concurrent_sessions=5, idle_timeout_minutes=30, max_duration_hours=24
    )
    resources = {r.resource: r for r in perms.resources}
    assert list(resources["sessions"].actions) == ["create", "read", "update"]
    assert resources["sessions"].conditions["max_sessions"] == "5"
    assert list(resources["payments"].actions) == ["read"]


async def test_list_audit_events_for_admins(client: AuthClient, mesh: Mesh) -> None:
    key = PrivateKey.random()
    reply = await client.login(key)
    await client.stub.Logout(
        auth_pb2.LogoutRequest(), metadata=client.md(reply.tokens.access_token)
    )
    admin = await mesh.token(role=access_pb2.ROLE_ADMIN)
    events = await client.stub.ListAuditEvents(
        auth_pb2.ListAuditEventsRequest(user_id=reply.user.user_id), metadata=client.md(admin)
    )
    assert [e.action for e in events.events] == ["logout", "login"]  # newest first
    assert all(e.result == "success" and e.ip_address == client.ip for e in events.events)
    only_logins = await client.stub.ListAuditEvents(
        auth_pb2.ListAuditEventsRequest(user_id=reply.user.user_id, action="login"),
        metadata=client.md(admin),
    )
    assert [e.action for e in only_logins.events] == ["login"]
    assert only_logins.events[0].session_id == reply.tokens.session_id
    async with mesh.channel("auth", identity="admin") as channel:
        by_service = await auth_pb2_grpc.AuthServiceStub(channel).ListAuditEvents(
            auth_pb2.ListAuditEventsRequest(user_id=reply.user.user_id)
        )
    assert by_service.total_size == 2
