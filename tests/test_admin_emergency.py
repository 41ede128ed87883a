"""Emergency controls over gRPC, observed at the sessions cluster that enforces them
(spec 06 §7 checks 2, 3 and 4), with their emergency logs and critical audit entries,
and refused to users, node operators and (for the super-admin controls) admins."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import grpc
import pytest

from lucid.admin.v1 import audit_pb2, emergency_pb2
from lucid.common.v1 import access_pb2
from lucid.sessions.v1 import sessions_pb2
from tests.admin_support import AdminEnv, admin_fixture, refused
from tests.support import details
from tests.waiting import eventually

E = emergency_pb2
DONE = {sessions_pb2.SESSION_STATE_COMPLETED}


admin = admin_fixture()


async def mode(admin: AdminEnv) -> E.SystemModeStatus:
    reply = await admin.emergency.GetSystemMode(
        E.GetSystemModeRequest(), metadata=await admin.md(access_pb2.ROLE_ADMIN)
    )
    return reply.status


async def emergency_entries(admin: AdminEnv, action_id: str) -> list[audit_pb2.AuditEntry]:
    reply = await admin.audit.QueryAuditLogs(
        audit_pb2.QueryAuditLogsRequest(
            action=audit_pb2.AUDIT_ACTION_EMERGENCY, resource_id=action_id, page_size=100
        ),
        metadata=await admin.md(access_pb2.ROLE_ADMIN),
    )
    return list(reply.entries)


async def create_refused(admin: AdminEnv, role: int = access_pb2.ROLE_USER) -> None:
    md = await admin.sessions.token(role=role)
    error = await refused(admin.sessions.create(md))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(error).reason == "LUCID_ERR_4205"


@pytest.mark.parametrize("role", [access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR])
async def test_users_and_operators_are_refused_every_emergency_rpc(
    admin: AdminEnv, role: int
) -> None:
    md = await admin.md(role)
    calls = [
        admin.emergency.StopAllSessions(
            E.StopAllSessionsRequest(reason="x", confirm=True), metadata=md
        ),
        admin.emergency.SystemLockdown(
            E.SystemLockdownRequest(reason="x", confirm=True), metadata=md
        ),
        admin.emergency.LiftLockdown(E.LiftLockdownRequest(reason="x", confirm=True), metadata=md),
        admin.emergency.DisableNewSessions(E.DisableNewSessionsRequest(reason="x"), metadata=md),
        admin.emergency.EnableNewSessions(E.EnableNewSessionsRequest(reason="x"), metadata=md),
        admin.emergency.GetSystemMode(E.GetSystemModeRequest(), metadata=md),
        admin.emergency.ListEmergencyLogs(E.ListEmergencyLogsRequest(), metadata=md),
    ]
    for call in calls:
        error = await refused(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await mode(admin)).mode == E.SYSTEM_MODE_NORMAL
    await admin.sessions.create(await admin.sessions.token())  # nothing changed


async def test_admin_may_not_lock_down_and_super_admin_must_confirm(admin: AdminEnv) -> None:
    lockdowns = len(await emergency_entries(admin, "system_lockdown"))
    error = await refused(
        admin.emergency.SystemLockdown(
            E.SystemLockdownRequest(reason="drill", confirm=True),
            metadata=await admin.admin_md(),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(
        admin.emergency.SystemLockdown(
            E.SystemLockdownRequest(reason="drill", confirm=False),
            metadata=await admin.super_admin(),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await mode(admin)).mode == E.SYSTEM_MODE_NORMAL
    assert len(await emergency_entries(admin, "system_lockdown")) == lockdowns


async def test_disable_new_sessions_bites_at_sessions_and_enable_restores(admin: AdminEnv) -> None:
    md = await admin.admin_md()
    before = len(await emergency_entries(admin, "disable_new_sessions"))
    reply = await admin.emergency.DisableNewSessions(
        E.DisableNewSessionsRequest(reason="maintenance window"), metadata=md
    )
    assert reply.status.mode == E.SYSTEM_MODE_NEW_SESSIONS_DISABLED
    assert not reply.status.new_sessions_allowed
    assert reply.log.action == E.EMERGENCY_ACTION_DISABLE_NEW_SESSIONS
    assert reply.log.status == E.EMERGENCY_LOG_STATUS_EXECUTED
    revert = reply.status.auto_revert_time.ToDatetime() - reply.status.since_time.ToDatetime()
    assert revert == timedelta(hours=12)
    await create_refused(admin)

    entries = await emergency_entries(admin, "disable_new_sessions")
    assert len(entries) == before + 1
    entry = entries[0]  # newest first
    assert entry.severity == audit_pb2.AUDIT_SEVERITY_CRITICAL
    assert entry.details["reason"] == "maintenance window"

    reply2 = await admin.emergency.EnableNewSessions(
        E.EnableNewSessionsRequest(reason="done"), metadata=md
    )
    assert reply2.status.mode == E.SYSTEM_MODE_NORMAL
    await admin.sessions.create(await admin.sessions.token())


async def test_disable_reverts_by_itself_after_12_hours(admin: AdminEnv) -> None:
    md = await admin.admin_md()
    reverts = E.ListEmergencyLogsRequest(action=E.EMERGENCY_ACTION_AUTO_REVERT)
    before = (await admin.emergency.ListEmergencyLogs(reverts, metadata=md)).total_size
    await admin.emergency.DisableNewSessions(
        E.DisableNewSessionsRequest(reason="overnight"), metadata=md
    )
    admin.clock.advance(timedelta(hours=12) - timedelta(seconds=1))
    assert (await mode(admin)).mode == E.SYSTEM_MODE_NEW_SESSIONS_DISABLED
    await create_refused(admin)
    admin.clock.advance(timedelta(seconds=1))
    assert (await mode(admin)).mode == E.SYSTEM_MODE_NORMAL
    await admin.sessions.create(await admin.sessions.token())
    logs = await admin.emergency.ListEmergencyLogs(reverts, metadata=md)
    assert logs.total_size == before + 1


async def test_stop_all_sessions_stops_and_finalizes_every_recording(admin: AdminEnv) -> None:
    md = await admin.sessions.token()
    ids = [await admin.sessions.recording(md) for _ in range(2)]
    for n, session_id in enumerate(ids):
        await admin.sessions.upload(md, session_id, 1, f"frame {n}".encode())
    reply = await admin.emergency.StopAllSessions(
        E.StopAllSessionsRequest(reason="incident", confirm=True),
        metadata=await admin.super_admin(),
    )
    assert reply.recording_sessions_stopped >= 2
    assert reply.rdp_sessions_stopped == 0  # no RDP session in this test
    assert reply.stopped_count == reply.recording_sessions_stopped
    assert reply.log.action == E.EMERGENCY_ACTION_STOP_ALL_SESSIONS
    assert reply.log.details["recordings_stopped"] == reply.recording_sessions_stopped
    for session_id in ids:
        finished = await admin.sessions.wait_state(md, session_id, DONE)
        assert finished.state == sessions_pb2.SESSION_STATE_COMPLETED
    logs = await admin.emergency.ListEmergencyLogs(
        E.ListEmergencyLogsRequest(action=E.EMERGENCY_ACTION_STOP_ALL_SESSIONS),
        metadata=await admin.md(access_pb2.ROLE_ADMIN),
    )
    assert logs.logs[0].log_id == reply.log.log_id  # newest first


async def user_locked_out(admin: AdminEnv, md: Any) -> bool:
    """Whether sessions refuses this user's calls for the lockdown (its cache may lag 1 s)."""
    try:
        await admin.sessions.sessions.ListSessions(sessions_pb2.ListSessionsRequest(), metadata=md)
    except grpc.aio.AioRpcError as exc:
        if details(exc).reason == "LUCID_ERR_4003":
            return True
        raise
    return False


async def test_lockdown_stops_sessions_locks_users_out_and_lifts(admin: AdminEnv) -> None:
    md = await admin.sessions.token()
    session_id = await admin.sessions.recording(md)
    await admin.sessions.upload(md, session_id, 1, b"a frame")
    sa = await admin.super_admin()
    reply = await admin.emergency.SystemLockdown(
        E.SystemLockdownRequest(reason="breach", confirm=True, auto_revert_seconds=3600),
        metadata=sa,
    )
    assert reply.status.mode == E.SYSTEM_MODE_LOCKDOWN
    assert reply.status.admin_only and reply.status.payouts_frozen
    assert reply.stopped_sessions >= 1
    entry = (await emergency_entries(admin, "system_lockdown"))[0]  # newest first
    assert entry.details["reason"] == "breach"
    assert entry.severity == audit_pb2.AUDIT_SEVERITY_CRITICAL
    assert entry.risk_level == audit_pb2.RISK_LEVEL_CRITICAL

    # The sessions pipeline refuses the user; an admin passes it but may not create.
    await eventually(lambda: user_locked_out(admin, md), timeout_s=10, what="users locked out")
    error = await refused(admin.sessions.get(md, session_id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "lockdown" in error.details()
    admin_md = await admin.sessions.token(role=access_pb2.ROLE_ADMIN)
    finished = await admin.sessions.wait_state(admin_md, session_id, DONE)
    assert finished.state == sessions_pb2.SESSION_STATE_COMPLETED
    await create_refused(admin, access_pb2.ROLE_ADMIN)

    # Inside a lockdown the lesser switch cannot undo it, and a second lockdown is refused.
    error = await refused(
        admin.emergency.EnableNewSessions(E.EnableNewSessionsRequest(reason="x"), metadata=sa)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = await refused(
        admin.emergency.SystemLockdown(
            E.SystemLockdownRequest(reason="again", confirm=True), metadata=sa
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    await create_refused(admin, access_pb2.ROLE_ADMIN)

    lifted = await admin.emergency.LiftLockdown(
        E.LiftLockdownRequest(reason="all clear", confirm=True), metadata=sa
    )
    assert lifted.status.mode == E.SYSTEM_MODE_NORMAL
    await eventually(
        lambda: _not(user_locked_out(admin, md)), timeout_s=10, what="users let back in"
    )
    await admin.sessions.create(md)
    error = await refused(
        admin.emergency.LiftLockdown(
            E.LiftLockdownRequest(reason="twice", confirm=True), metadata=sa
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def _not(check: Awaitable[bool]) -> bool:
    return not await check
