"""TOTP step-up before emergency controls (spec 06 §7 check 14): no step-up, no
emergency action; a wrong or replayed code fails; five failures lock the account;
every attempt and the action it covers are audited."""

from __future__ import annotations

import grpc
import pyotp

from lucid.admin.v1 import admin_pb2, audit_pb2, emergency_pb2
from lucid.common.v1 import access_pb2
from tests.admin_support import AdminEnv, admin_fixture, refused
from tests.support import details

E = emergency_pb2


admin = admin_fixture()


async def step_ups(admin: AdminEnv, user_id: str) -> list[audit_pb2.AuditEntry]:
    reply = await admin.audit.QueryAuditLogs(
        audit_pb2.QueryAuditLogsRequest(action=audit_pb2.AUDIT_ACTION_STEP_UP, user_id=user_id),
        metadata=await admin.md(access_pb2.ROLE_ADMIN),
    )
    return list(reply.entries)


async def test_no_step_up_no_emergency_action(admin: AdminEnv) -> None:
    user_id, _ = await admin.totp_user()
    md = await admin.md(access_pb2.ROLE_SUPER_ADMIN, user_id)
    for call in (
        admin.emergency.DisableNewSessions(E.DisableNewSessionsRequest(reason="x"), metadata=md),
        admin.emergency.StopAllSessions(
            E.StopAllSessionsRequest(reason="x", confirm=True), metadata=md
        ),
        admin.emergency.SystemLockdown(
            E.SystemLockdownRequest(reason="x", confirm=True), metadata=md
        ),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert details(error).reason == "LUCID_ERR_2015"
        assert details(error).metadata["step_up"] == "required"
    status = await admin.emergency.GetSystemMode(E.GetSystemModeRequest(), metadata=md)
    assert status.status.mode == E.SYSTEM_MODE_NORMAL
    await admin.sessions.create(await admin.sessions.token())


async def test_a_right_code_steps_up_once_and_covers_the_action(admin: AdminEnv) -> None:
    user_id, secret = await admin.totp_user()
    md = await admin.md(access_pb2.ROLE_ADMIN, user_id)
    code = pyotp.TOTP(secret).now()
    granted = await admin.stub_auth.StepUp(admin_pb2.StepUpRequest(code=code), metadata=md)
    assert granted.step_up_id
    replay = await refused(admin.stub_auth.StepUp(admin_pb2.StepUpRequest(code=code), metadata=md))
    assert details(replay).reason == "LUCID_ERR_2007"
    reply = await admin.emergency.DisableNewSessions(
        E.DisableNewSessionsRequest(reason="covered"), metadata=md
    )
    try:
        entries = await admin.audit.QueryAuditLogs(
            audit_pb2.QueryAuditLogsRequest(
                action=audit_pb2.AUDIT_ACTION_EMERGENCY, user_id=user_id
            ),
            metadata=md,
        )
        assert [e.step_up_id for e in entries.entries] == [granted.step_up_id]
        assert reply.log.user_id == user_id
    finally:
        await admin.emergency.EnableNewSessions(E.EnableNewSessionsRequest(), metadata=md)
    results = [e.result for e in await step_ups(admin, user_id)]
    assert sorted(results) == sorted(
        [audit_pb2.AUDIT_RESULT_SUCCESS, audit_pb2.AUDIT_RESULT_FAILURE]
    )


async def test_wrong_codes_fail_and_five_lock_the_account(admin: AdminEnv) -> None:
    user_id, secret = await admin.totp_user()
    md = await admin.md(access_pb2.ROLE_ADMIN, user_id)
    right = pyotp.TOTP(secret).now()
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
    for _ in range(5):
        error = await refused(
            admin.stub_auth.StepUp(admin_pb2.StepUpRequest(code=wrong), metadata=md)
        )
        assert details(error).reason == "LUCID_ERR_2007"
    error = await refused(admin.stub_auth.StepUp(admin_pb2.StepUpRequest(code=right), metadata=md))
    assert details(error).reason == "LUCID_ERR_2005"
    entries = await step_ups(admin, user_id)
    assert len(entries) == 6
    assert all(e.result == audit_pb2.AUDIT_RESULT_FAILURE for e in entries)
    error = await refused(
        admin.emergency.DisableNewSessions(E.DisableNewSessionsRequest(reason="x"), metadata=md)
    )
    assert details(error).metadata["step_up"] == "required"
