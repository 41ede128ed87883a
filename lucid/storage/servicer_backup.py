"""gRPC adapter of ``lucid.storage.v1.BackupService``."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc

from lucid.runtime import paging
from lucid.runtime.audit import AuditTrail, audited
from lucid.runtime.wire import optional_timestamp
from lucid.storage.backups import DEFAULT_RETENTION_DAYS, Backups
from lucid.storage.ratelimit import CallerLimits
from lucid.storage.schedules import Schedules
from lucid.storage.storeerrors import maps_store_errors
from lucid.storage.v1 import backup_pb2, backup_pb2_grpc

BACKUP_STATES = {
    "in_progress": backup_pb2.BACKUP_STATE_IN_PROGRESS,
    "completed": backup_pb2.BACKUP_STATE_COMPLETED,
    "failed": backup_pb2.BACKUP_STATE_FAILED,
    "cancelled": backup_pb2.BACKUP_STATE_CANCELLED,
}
STATE_NAMES = {number: name for name, number in BACKUP_STATES.items()}
RESTORE_STATES = {
    "started": backup_pb2.RESTORE_STATE_STARTED,
    "in_progress": backup_pb2.RESTORE_STATE_IN_PROGRESS,
    "completed": backup_pb2.RESTORE_STATE_COMPLETED,
    "failed": backup_pb2.RESTORE_STATE_FAILED,
}


def backup_message(record: dict[str, Any]) -> backup_pb2.Backup:
    """A backup record as the contract shows it."""
    return backup_pb2.Backup(
        backup_id=record["backup_id"],
        name=record["name"],
        type=backup_pb2.BACKUP_TYPE_FULL,
        state=BACKUP_STATES[record["state"]],
        collections=record["chosen"],
        compression=record["compression"],
        encryption=record["encryption"],
        retention_days=record["retention_days"],
        size_bytes=record["size_bytes"],
        document_count=record["document_count"],
        checksum=record["checksum"],
        schedule_id=record["schedule_id"],
        create_time=optional_timestamp(record["create_time"]),
        complete_time=optional_timestamp(record.get("complete_time")),
        expire_time=optional_timestamp(record["expire_time"]),
        error_message=record["error_message"],
    )


def restore_message(record: dict[str, Any]) -> backup_pb2.Restore:
    """A restore record as the contract shows it."""
    return backup_pb2.Restore(
        restore_id=record["restore_id"],
        backup_id=record["backup_id"],
        state=RESTORE_STATES[record["state"]],
        target_database=record["target_database"],
        collections=record["collections"],
        drop_existing=record["drop_existing"],
        documents_restored=record["documents_restored"],
        start_time=optional_timestamp(record["start_time"]),
        complete_time=optional_timestamp(record.get("complete_time")),
        error_message=record["error_message"],
    )


def schedule_message(record: dict[str, Any]) -> backup_pb2.BackupSchedule:
    """A schedule record as the contract shows it."""
    return backup_pb2.BackupSchedule(
        schedule_id=record["schedule_id"],
        name=record["name"],
        cron=record["cron"],
        backup_type=backup_pb2.BACKUP_TYPE_FULL,
        retention_days=record["retention_days"],
        collections=record["collections"],
        enabled=record["enabled"],
        next_run_time=optional_timestamp(record["next_run_time"]),
        last_run_time=optional_timestamp(record.get("last_run_time")),
        last_backup_id=record["last_backup_id"],
        create_time=optional_timestamp(record["create_time"]),
    )


@maps_store_errors
class BackupServicer(backup_pb2_grpc.BackupServiceServicer):
    """Backups, restores and schedules; every change (create, delete, restore) counts
    against the backup limit, reads against the database limit."""

    def __init__(
        self, backups: Backups, schedules: Schedules, limiter: CallerLimits, audit: AuditTrail
    ) -> None:
        self.backups = backups
        self.schedules = schedules
        self.limiter = limiter
        self.audit = audit

    async def ListBackups(
        self, request: backup_pb2.ListBackupsRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.ListBackupsResponse:
        await self.limiter.check("database")
        page = paging.page(request)
        if request.type not in (backup_pb2.BACKUP_TYPE_UNSPECIFIED, backup_pb2.BACKUP_TYPE_FULL):
            return backup_pb2.ListBackupsResponse()
        found, total = await self.backups.find_page(
            state=STATE_NAMES.get(request.state), offset=page.offset, limit=page.size
        )
        return backup_pb2.ListBackupsResponse(
            backups=[backup_message(r) for r in found],
            next_page_token=page.next_token(len(found), total),
            total_size=total,
        )

    @audited(lambda r: r.name)
    async def CreateBackup(
        self, request: backup_pb2.CreateBackupRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.CreateBackupResponse:
        await self.limiter.check("backups")
        record = await self.backups.create(
            name=request.name,
            backup_type=request.type,
            collections=list(request.collections),
            compression=request.compression if request.HasField("compression") else True,
            encryption=request.encryption if request.HasField("encryption") else True,
            retention_days=_retention(request),
        )
        return backup_pb2.CreateBackupResponse(backup=backup_message(record))

    async def GetBackup(
        self, request: backup_pb2.GetBackupRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.GetBackupResponse:
        await self.limiter.check("database")
        return backup_pb2.GetBackupResponse(
            backup=backup_message(await self.backups.get(request.backup_id))
        )

    @audited(lambda r: r.backup_id)
    async def DeleteBackup(
        self, request: backup_pb2.DeleteBackupRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.DeleteBackupResponse:
        await self.limiter.check("backups")
        await self.backups.delete(request.backup_id)
        return backup_pb2.DeleteBackupResponse()

    @audited(lambda r: f"{r.backup_id} -> {r.target_database or 'lucid'}")
    async def RestoreBackup(
        self, request: backup_pb2.RestoreBackupRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.RestoreBackupResponse:
        await self.limiter.check("backups")
        record = await self.backups.restore(
            request.backup_id,
            target_database=request.target_database,
            collections=list(request.collections),
            drop_existing=request.drop_existing,
            point_in_time=(
                request.point_in_time.ToDatetime(tzinfo=UTC)
                if request.HasField("point_in_time")
                else None
            ),
        )
        return backup_pb2.RestoreBackupResponse(restore=restore_message(record))

    async def GetRestore(
        self, request: backup_pb2.GetRestoreRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.GetRestoreResponse:
        await self.limiter.check("database")
        return backup_pb2.GetRestoreResponse(
            restore=restore_message(await self.backups.get_restore(request.restore_id))
        )

    async def ListBackupSchedules(
        self, request: backup_pb2.ListBackupSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.ListBackupSchedulesResponse:
        await self.limiter.check("database")
        page = paging.page(request)
        found, total = await self.schedules.find_page(offset=page.offset, limit=page.size)
        return backup_pb2.ListBackupSchedulesResponse(
            schedules=[schedule_message(r) for r in found],
            next_page_token=page.next_token(len(found), total),
            total_size=total,
        )

    @audited(lambda r: r.name)
    async def CreateBackupSchedule(
        self, request: backup_pb2.CreateBackupScheduleRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.CreateBackupScheduleResponse:
        await self.limiter.check("backups")
        record = await self.schedules.create(
            name=request.name,
            expression=request.cron,
            backup_type=request.backup_type,
            retention_days=_retention(request),
            collections=list(request.collections),
            enabled=request.enabled if request.HasField("enabled") else True,
        )
        return backup_pb2.CreateBackupScheduleResponse(schedule=schedule_message(record))

    @audited(lambda r: r.schedule_id)
    async def DeleteBackupSchedule(
        self, request: backup_pb2.DeleteBackupScheduleRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.DeleteBackupScheduleResponse:
        await self.limiter.check("backups")
        await self.schedules.delete(request.schedule_id)
        return backup_pb2.DeleteBackupScheduleResponse()


def _retention(
    request: backup_pb2.CreateBackupRequest | backup_pb2.CreateBackupScheduleRequest,
) -> int:
    """The retention asked for, or the default of 30 days."""
    if request.HasField("retention_days"):
        return request.retention_days
    return DEFAULT_RETENTION_DAYS
