"""gRPC adapter of ``lucid.storage.v1.BackupService``."""

from __future__ import annotations

from datetime import UTC

import grpc

from lucid.runtime import paging
from lucid.runtime.audit import AuditTrail, audited
from lucid.storage import convert
from lucid.storage.backups import DEFAULT_RETENTION_DAYS, Backups
from lucid.storage.ratelimit import CallerLimits
from lucid.storage.schedules import Schedules
from lucid.storage.storeerrors import maps_store_errors
from lucid.storage.v1 import backup_pb2, backup_pb2_grpc


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
            state=convert.BACKUP_STATE_NAMES.get(request.state), offset=page.offset, limit=page.size
        )
        return backup_pb2.ListBackupsResponse(
            backups=[convert.backup_message(r) for r in found],
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
        return backup_pb2.CreateBackupResponse(backup=convert.backup_message(record))

    async def GetBackup(
        self, request: backup_pb2.GetBackupRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.GetBackupResponse:
        await self.limiter.check("database")
        return backup_pb2.GetBackupResponse(
            backup=convert.backup_message(await self.backups.get(request.backup_id))
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
        return backup_pb2.RestoreBackupResponse(restore=convert.restore_message(record))

    async def GetRestore(
        self, request: backup_pb2.GetRestoreRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.GetRestoreResponse:
        await self.limiter.check("database")
        return backup_pb2.GetRestoreResponse(
            restore=convert.restore_message(await self.backups.get_restore(request.restore_id))
        )

    async def ListBackupSchedules(
        self, request: backup_pb2.ListBackupSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> backup_pb2.ListBackupSchedulesResponse:
        await self.limiter.check("database")
        page = paging.page(request)
        found, total = await self.schedules.find_page(offset=page.offset, limit=page.size)
        return backup_pb2.ListBackupSchedulesResponse(
            schedules=[convert.schedule_message(r) for r in found],
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
        return backup_pb2.CreateBackupScheduleResponse(schedule=convert.schedule_message(record))

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
