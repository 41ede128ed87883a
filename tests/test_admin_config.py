"""System configuration over gRPC (spec 06 §7 check 13): ranges refused, a valid change
saved as a new version and audited with old and new values; backup and restore with
a checksum that must match."""

from __future__ import annotations

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from lucid.admin.v1 import audit_pb2, config_pb2
from lucid.common.v1 import access_pb2
from tests.admin_support import AdminEnv, admin_fixture, refused
from tests.support import details

C = config_pb2


admin = admin_fixture()


async def config_entries(admin: AdminEnv) -> list[audit_pb2.AuditEntry]:
    reply = await admin.audit.QueryAuditLogs(
        audit_pb2.QueryAuditLogsRequest(resource=audit_pb2.AUDIT_RESOURCE_CONFIG, page_size=100),
        metadata=await admin.md(access_pb2.ROLE_ADMIN),
    )
    return list(reply.entries)


async def test_out_of_range_is_refused_and_changes_nothing(admin: AdminEnv) -> None:
    sa = await admin.super_admin()
    before = (await admin.config.GetConfig(C.GetConfigRequest(), metadata=sa)).config
    for bad in (
        C.SystemConfig(session_timeout_seconds=100),
        C.SystemConfig(max_sessions_per_user=101),
        C.SystemConfig(audit_log_retention_days=29),
    ):
        error = await refused(
            admin.config.UpdateConfig(C.UpdateConfigRequest(config=bad), metadata=sa)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(error).field_violations[0].field.startswith("config.")
    error = await refused(
        admin.config.UpdateConfig(
            C.UpdateConfigRequest(config=C.SystemConfig(), update_mask=FieldMask(paths=["colour"])),
            metadata=sa,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = (await admin.config.GetConfig(C.GetConfigRequest(), metadata=sa)).config
    assert after == before


async def test_a_valid_change_is_versioned_and_audited_with_old_and_new(admin: AdminEnv) -> None:
    sa = await admin.super_admin()
    before = (await admin.config.GetConfig(C.GetConfigRequest(), metadata=sa)).config
    new_timeout = 1800 if before.session_timeout_seconds != 1800 else 2400
    reply = await admin.config.UpdateConfig(
        C.UpdateConfigRequest(config=C.SystemConfig(session_timeout_seconds=new_timeout)),
        metadata=sa,
    )
    assert reply.config.session_timeout_seconds == new_timeout
    assert [(c.field, c.old_value, c.new_value) for c in reply.changes] == [
        ("session_timeout_seconds", str(before.session_timeout_seconds), str(new_timeout))
    ]
    got = (await admin.config.GetConfig(C.GetConfigRequest(), metadata=sa)).config
    assert got.session_timeout_seconds == new_timeout and got.updated_by_user_id
    latest = (await config_entries(admin))[0]
    assert latest.details["changes"][0]["old"] == before.session_timeout_seconds
    assert latest.details["changes"][0]["new"] == new_timeout
    # A mask may turn a flag off (a zero value).
    reply = await admin.config.UpdateConfig(
        C.UpdateConfigRequest(
            config=C.SystemConfig(), update_mask=FieldMask(paths=["enable_emergency_controls"])
        ),
        metadata=sa,
    )
    assert reply.config.enable_emergency_controls is False
    error = await refused(
        admin.config.UpdateConfig(
            C.UpdateConfigRequest(config=C.SystemConfig(max_session_size_gb=5)),
            metadata=await admin.md(access_pb2.ROLE_NODE_OPERATOR),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_backup_and_restore(admin: AdminEnv) -> None:
    sa = await admin.super_admin()
    backup = (await admin.config.BackupConfig(C.BackupConfigRequest(), metadata=sa)).backup
    await admin.config.UpdateConfig(
        C.UpdateConfigRequest(config=C.SystemConfig(max_sessions_per_user=42)), metadata=sa
    )
    forged = C.ConfigBackup()
    forged.CopyFrom(backup)
    forged.config.max_sessions_per_user = 99
    error = await refused(
        admin.config.RestoreConfig(C.RestoreConfigRequest(backup=forged, confirm=True), metadata=sa)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    current = (await admin.config.GetConfig(C.GetConfigRequest(), metadata=sa)).config
    assert current.max_sessions_per_user == 42
    restored = await admin.config.RestoreConfig(
        C.RestoreConfigRequest(backup=backup, confirm=True, reason="roll back"), metadata=sa
    )
    assert restored.config.max_sessions_per_user == backup.config.max_sessions_per_user
    assert [c.field for c in restored.changes] == ["max_sessions_per_user"]
    assert (await config_entries(admin))[0].details["how"] == "restore"
