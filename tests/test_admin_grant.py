"""``lucid admin grant``: the operator certificate bootstraps the first super admin of a
fresh system (audited at auth); nothing else may, and once a super admin exists the
operator may not either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from tronpy.keys import PrivateKey

from lucid.admin.grantcli import grant
from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.common.v1 import access_pb2
from lucid.runtime.config import Settings
from lucid.supervisor.localservers import free_port
from tests.auth_support import address_of, auth_client, auth_db, claims, refused
from tests.support import Mesh, bearer


@pytest.fixture(scope="module")
async def fresh(settings: Settings) -> AsyncIterator[Mesh]:
    """An auth cluster of its own (its own database): a system without a super admin."""
    own = settings.replace(
        ports={**settings.ports, "auth": free_port()}, mongodb_db=f"{settings.mongodb_db}_grant"
    )
    mesh = Mesh(own)
    await mesh.start("auth")
    try:
        yield mesh
    finally:
        await mesh.stop_all()


async def signed_in(mesh: Mesh) -> tuple[PrivateKey, auth_pb2.LoginResponse]:
    key = PrivateKey.random()
    client = auth_client(mesh.settings)
    try:
        return key, await client.login(key)
    finally:
        await client.channel.close()


async def events(mesh: Mesh, user_id: str) -> list[dict[str, Any]]:
    cursor = auth_db(mesh)["auth_audit_events"].find(
        {"action": "bootstrap_role", "user_id": user_id}
    )
    return [doc async for doc in cursor]


async def test_only_the_operator_bootstraps_the_first_super_admin(fresh: Mesh) -> None:
    key, login = await signed_in(fresh)
    address = address_of(key)
    request = auth_pb2.BootstrapRoleRequest(tron_address=address, role=access_pb2.ROLE_SUPER_ADMIN)
    # Not the edge (anyone on the internet), not a user with a token.
    async with fresh.channel("auth", "edge") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        error = await refused(stub.BootstrapRole(request))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    async with fresh.channel("auth", "operator") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        error = await refused(
            stub.BootstrapRole(request, metadata=bearer(login.tokens.access_token))
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert claims(login.tokens.access_token)["role"] == "user"

    status, text = await grant(fresh.settings, "T" + "1" * 33, "super_admin")
    assert status == 1 and "LUCID_ERR_4001" in text  # nobody signed in with it

    status, text = await grant(fresh.settings, address, "super_admin")
    assert status == 0, text
    assert address in text
    _, again = await signed_in_as(fresh, key)
    assert claims(again.tokens.access_token)["role"] == "super_admin"
    [done] = [e for e in await events(fresh, login.user.user_id) if e["result"] == "success"]
    assert done["peer"] == "operator" and done["resource"] == "role:super_admin"

    # Now roles come from admins only: the operator is refused.
    other, other_login = await signed_in(fresh)
    status, text = await grant(fresh.settings, address_of(other), "super_admin")
    assert status == 1 and "LUCID_ERR_4003" in text
    assert claims(other_login.tokens.access_token)["role"] == "user"
    assert await grant(fresh.settings, address_of(other), "emperor") == (
        2,
        "unknown role 'emperor'; one of admin, node_operator, super_admin, user",
    )


async def signed_in_as(mesh: Mesh, key: PrivateKey) -> tuple[PrivateKey, auth_pb2.LoginResponse]:
    client = auth_client(mesh.settings)
    try:
        return key, await client.login(key)
    finally:
        await client.channel.close()
