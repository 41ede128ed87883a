"""Audit events of the other clusters flow into admin's tamper-evident chain (issue 13):
auth's role and status changes, a session stopped at the sessions cluster, and events
published by the nodes and payments identities on the mesh each become one chained
entry naming the event; what is not audited (a session started) is left out; the chain
still verifies (an event's data is entered in the form the store keeps)."""

from __future__ import annotations

import uuid

from google.protobuf import struct_pb2

from lucid.admin.v1 import admin_pb2, admin_pb2_grpc, audit_pb2
from lucid.common.v1 import access_pb2
from lucid.mesh.v1 import messaging_pb2, messaging_pb2_grpc
from lucid.sessions.v1 import sessions_pb2
from tests.admin_support import AdminEnv, admin_fixture
from tests.waiting import eventually

A = audit_pb2
admin = admin_fixture()


async def entries_about(admin: AdminEnv, resource_id: str) -> list[A.AuditEntry]:
    reply = await admin.audit.QueryAuditLogs(
        A.QueryAuditLogsRequest(resource_id=resource_id, page_size=100),
        metadata=await admin.admin_md(),
    )
    return list(reply.entries)


async def wait_entries(admin: AdminEnv, resource_id: str, count: int) -> list[A.AuditEntry]:
    async def found() -> list[A.AuditEntry] | None:
        entries = await entries_about(admin, resource_id)
        return entries if len(entries) >= count else None

    return await eventually(found, timeout_s=20, what=f"{count} entries about {resource_id}")


async def test_role_and_status_changes_at_auth_enter_the_chain(admin: AdminEnv) -> None:
    user_id, _ = await admin.totp_user()
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN)
    users = admin_pb2_grpc.AdminUserServiceStub(admin.channel)
    await users.UpdateUser(
        admin_pb2.UpdateUserRequest(user_id=user_id, role=access_pb2.ROLE_NODE_OPERATOR),
        metadata=md,
    )
    await users.UpdateUser(
        admin_pb2.UpdateUserRequest(user_id=user_id, status=admin_pb2.ADMIN_USER_STATUS_SUSPENDED),
        metadata=md,
    )
    # admin's own "update" entry, and auth's two published changes
    entries = await wait_entries(admin, user_id, 4)
    published = {e.details["event_type"]: e for e in entries if "event_type" in e.details}
    role = published["user.role-changed"]
    assert role.action == A.AUDIT_ACTION_UPDATE and role.resource == A.AUDIT_RESOURCE_USER
    assert role.details["role"] == "node_operator"
    assert role.details["event_source"] == "auth"
    assert role.risk_level == A.RISK_LEVEL_HIGH
    assert published["user.status-changed"].details["status"] == "suspended"


async def test_a_stopped_session_enters_the_chain_a_started_one_does_not(
    admin: AdminEnv,
) -> None:
    owner = await admin.sessions.token()
    session_id = await admin.sessions.recording(owner)
    await admin.sessions.sessions.StopRecording(
        sessions_pb2.StopRecordingRequest(session_id=session_id), metadata=owner
    )
    (entry,) = await wait_entries(admin, session_id, 1)
    assert entry.action == A.AUDIT_ACTION_TERMINATE
    assert entry.resource == A.AUDIT_RESOURCE_SESSION
    assert entry.details["event_type"] == "session.state-changed"
    assert entry.details["action"] == "stop"
    assert entry.details["event_source"] == "sessions"
    assert len(await entries_about(admin, session_id)) == 1, "create and start are not audited"


async def test_node_and_payout_events_enter_the_chain_and_it_verifies(admin: AdminEnv) -> None:
    node_id, payout_id = str(uuid.uuid4()), str(uuid.uuid4())
    for identity, event_type, data in (
        # a key the store refuses as it is ("." in it): entered as "cpu_share"
        ("nodes", "node.registered", {"node_id": node_id, "owner_user_id": "u1", "cpu.share": 0.5}),
        ("payments", "payout.created", {"payout_id": payout_id, "amount_micros": 5_000_000}),
    ):
        body = struct_pb2.Struct()
        body.update(data)
        async with admin.sessions.main.channel("mesh", identity) as channel:
            await messaging_pb2_grpc.MessagingServiceStub(channel).PublishEvent(
                messaging_pb2.PublishEventRequest(
                    event_id=str(uuid.uuid4()), event_type=event_type, data=body
                ),
                timeout=10,
            )
    (node,) = await wait_entries(admin, node_id, 1)
    assert (node.action, node.resource) == (A.AUDIT_ACTION_CREATE, A.AUDIT_RESOURCE_NODE)
    assert node.details["event_source"] == "nodes"
    assert node.details["cpu_share"] == 0.5
    (payout,) = await wait_entries(admin, payout_id, 1)
    assert (payout.action, payout.resource) == (A.AUDIT_ACTION_CREATE, A.AUDIT_RESOURCE_PAYOUT)
    assert payout.details["amount_micros"] == 5_000_000
    checked = await admin.audit.VerifyAuditChain(
        A.VerifyAuditChainRequest(), metadata=await admin.admin_md()
    )
    assert checked.valid
