"""Console session termination over gRPC (spec 06 §7 checks 1, 5 and 8), carried out by
the sessions cluster: the session stops and finalizes; one audit entry per request.
A session's logs are its audit events at the sessions cluster."""

from __future__ import annotations

import uuid

import grpc
import pytest

from lucid.admin.v1 import admin_pb2, audit_pb2, operations_pb2
from lucid.common.v1 import access_pb2
from lucid.sessions.v1 import sessions_pb2
from tests.admin_support import AdminEnv, admin_fixture, refused
from tests.support import details

OPS = operations_pb2
DONE = {sessions_pb2.SESSION_STATE_COMPLETED}


admin = admin_fixture()


async def recording(admin: AdminEnv, md: object) -> str:
    session_id = await admin.sessions.recording(md)
    await admin.sessions.upload(md, session_id, 1, b"a frame")
    return session_id


async def terminations(admin: AdminEnv) -> int:
    """Admin's own terminate entries (not the sessions cluster's published stops)."""
    reply = await admin.audit.QueryAuditLogs(
        audit_pb2.QueryAuditLogsRequest(action=audit_pb2.AUDIT_ACTION_TERMINATE, page_size=1000),
        metadata=await admin.md(access_pb2.ROLE_ADMIN),
    )
    return sum(1 for e in reply.entries if "event_type" not in e.details.fields)


@pytest.mark.parametrize("role", [access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR])
async def test_users_and_operators_may_not_terminate(admin: AdminEnv, role: int) -> None:
    owner = await admin.sessions.token()
    session_id = await recording(admin, owner)
    md = await admin.md(role)
    error = await refused(
        admin.sessions_admin.TerminateSession(
            OPS.TerminateSessionRequest(session_id=session_id), metadata=md
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(
        admin.sessions_admin.BulkTerminateSessions(
            OPS.BulkTerminateSessionsRequest(session_ids=[session_id]), metadata=md
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (
        await admin.sessions.get(owner, session_id)
    ).state == sessions_pb2.SESSION_STATE_RECORDING


async def test_admin_terminates_a_session_which_then_finalizes(admin: AdminEnv) -> None:
    owner = await admin.sessions.token()
    session_id = await recording(admin, owner)
    before = await terminations(admin)
    reply = await admin.sessions_admin.TerminateSession(
        OPS.TerminateSessionRequest(session_id=session_id, reason="abuse"),
        metadata=await admin.md(access_pb2.ROLE_ADMIN),
    )
    assert reply.session.session_id == session_id
    assert reply.session.state == admin_pb2.ADMIN_SESSION_STATE_TERMINATED
    await admin.sessions.wait_state(owner, session_id, DONE)
    assert await terminations(admin) == before + 1

    error = await refused(
        admin.sessions_admin.TerminateSession(
            OPS.TerminateSessionRequest(session_id=str(uuid.uuid4())),
            metadata=await admin.md(access_pb2.ROLE_ADMIN),
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert details(error).reason == "LUCID_ERR_4001"
    assert await terminations(admin) == before + 2  # the failure is audited too


async def test_bulk_terminate_limits_and_per_id_results(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_ADMIN)
    error = await refused(
        admin.sessions_admin.BulkTerminateSessions(
            OPS.BulkTerminateSessionsRequest(session_ids=[str(uuid.uuid4()) for _ in range(101)]),
            metadata=md,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    owner = await admin.sessions.token()
    known = [await recording(admin, owner) for _ in range(2)]
    unknown = str(uuid.uuid4())
    before = await terminations(admin)
    reply = await admin.sessions_admin.BulkTerminateSessions(
        OPS.BulkTerminateSessionsRequest(session_ids=[known[0], unknown, known[1]], reason="sweep"),
        metadata=md,
    )
    assert reply.total_attempted == 3 and reply.successful == 2
    outcome = {r.session_id: (r.success, r.error_code) for r in reply.results}
    assert outcome == {
        known[0]: (True, ""),
        known[1]: (True, ""),
        unknown: (False, "LUCID_ERR_4001"),
    }
    for session_id in known:
        await admin.sessions.wait_state(owner, session_id, DONE)
    assert await terminations(admin) == before + 1


async def test_list_and_details_from_the_sessions_cluster(admin: AdminEnv) -> None:
    md = await admin.md(access_pb2.ROLE_ADMIN)
    owner_id = str(uuid.uuid4())
    owner = await admin.sessions.token(user_id=owner_id)
    live = await recording(admin, owner)
    idle = (await admin.sessions.create(owner)).session_id
    ended = await recording(admin, owner)
    await admin.sessions_admin.TerminateSession(
        OPS.TerminateSessionRequest(session_id=ended), metadata=md
    )
    finished = await admin.sessions.wait_state(owner, ended, DONE)

    every = await admin.sessions_admin.ListSessions(
        OPS.ListSessionsRequest(user_id=owner_id), metadata=md
    )
    states = {s.session_id: s.state for s in every.sessions}
    assert states == {
        live: admin_pb2.ADMIN_SESSION_STATE_ACTIVE,
        idle: admin_pb2.ADMIN_SESSION_STATE_IDLE,
        ended: admin_pb2.ADMIN_SESSION_STATE_TERMINATED,
    }
    assert every.total_size == 3
    active = await admin.sessions_admin.ListSessions(
        OPS.ListSessionsRequest(user_id=owner_id, state=admin_pb2.ADMIN_SESSION_STATE_ACTIVE),
        metadata=md,
    )
    assert [s.session_id for s in active.sessions] == [live]
    first = await admin.sessions_admin.ListSessions(
        OPS.ListSessionsRequest(user_id=owner_id, page_size=2), metadata=md
    )
    second = await admin.sessions_admin.ListSessions(
        OPS.ListSessionsRequest(user_id=owner_id, page_size=2, page_token=first.next_page_token),
        metadata=md,
    )
    paged = [s.session_id for s in [*first.sessions, *second.sessions]]
    assert sorted(paged) == sorted(states) and not second.next_page_token

    shown = await admin.sessions_admin.GetSessionDetails(
        OPS.GetSessionDetailsRequest(session_id=ended), metadata=md
    )
    assert shown.session.user_id == owner_id
    assert shown.recording_state == "completed"
    assert shown.chunk_count == finished.statistics.chunk_count >= 1
    assert shown.merkle_root == finished.merkle_root != ""
    assert shown.anchor_tx_hash == finished.anchoring.tx_hash
    error = await refused(
        admin.sessions_admin.GetSessionDetails(
            OPS.GetSessionDetailsRequest(session_id=str(uuid.uuid4())), metadata=md
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await refused(
        admin.sessions_admin.ListSessions(
            OPS.ListSessionsRequest(), metadata=await admin.md(access_pb2.ROLE_NODE_OPERATOR)
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_session_logs_are_the_sessions_audit_events(admin: AdminEnv) -> None:
    owner = await admin.sessions.token()
    session_id = await recording(admin, owner)
    md = await admin.md(access_pb2.ROLE_ADMIN)
    reply = await admin.sessions_admin.GetSessionLogs(
        OPS.GetSessionLogsRequest(session_id=session_id, page_size=100), metadata=md
    )
    messages = [e.message for e in reply.entries]
    assert reply.total_size == len(reply.entries) >= 2
    assert any(m.startswith("session.create") for m in messages), messages
    assert any(m.startswith("session.start") for m in messages), messages
    assert all(e.source == "sessions" and e.level == "info" for e in reply.entries)
    assert all(e.HasField("log_time") for e in reply.entries)
    first = await admin.sessions_admin.GetSessionLogs(
        OPS.GetSessionLogsRequest(session_id=session_id, page_size=1), metadata=md
    )
    assert len(first.entries) == 1 and first.next_page_token

    error = await refused(
        admin.sessions_admin.GetSessionLogs(
            OPS.GetSessionLogsRequest(session_id=str(uuid.uuid4())), metadata=md
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    for role in (access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR):
        error = await refused(
            admin.sessions_admin.GetSessionLogs(
                OPS.GetSessionLogsRequest(session_id=session_id), metadata=await admin.md(role)
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
