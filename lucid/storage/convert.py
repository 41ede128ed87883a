"""Proto ↔ record mapping of the storage cluster."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lucid.runtime.wire import optional_timestamp
from lucid.storage.usage import DirectoryUsage
from lucid.storage.v1 import backup_pb2, search_pb2, volume_pb2
from lucid.storage.volumes import STATES as VOLUME_STATES

BACKUP_STATES = {
    "in_progress": backup_pb2.BACKUP_STATE_IN_PROGRESS,
    "completed": backup_pb2.BACKUP_STATE_COMPLETED,
    "failed": backup_pb2.BACKUP_STATE_FAILED,
    "cancelled": backup_pb2.BACKUP_STATE_CANCELLED,
}
BACKUP_STATE_NAMES = {number: name for name, number in BACKUP_STATES.items()}
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


OPERATION_STATES = {
    "started": volume_pb2.OPERATION_STATE_STARTED,
    "in_progress": volume_pb2.OPERATION_STATE_IN_PROGRESS,
    "completed": volume_pb2.OPERATION_STATE_COMPLETED,
    "failed": volume_pb2.OPERATION_STATE_FAILED,
}


def volume_message(record: dict[str, Any], usage: DirectoryUsage | None) -> volume_pb2.Volume:
    """A volume record and its usage as the contract shows them."""
    volume = volume_pb2.Volume(
        volume_id=record["volume_id"],
        name=record["name"],
        type=volume_pb2.VOLUME_TYPE_LOCAL,
        state=VOLUME_STATES[record["state"]],
        size_bytes=record["size_bytes"],
        file_system=record["file_system"],
        encryption=record["encryption"],
        mount_path=record["mount_path"],
        purpose=record["purpose"],
        create_time=optional_timestamp(record["create_time"]),
        update_time=optional_timestamp(record["update_time"]),
    )
    if usage is None:
        volume.state = volume_pb2.VOLUME_STATE_ERROR
    else:
        volume.used_bytes = usage.used_bytes
        volume.free_bytes = usage.free_bytes
        volume.usage_percent = usage.usage_percent
        volume.alert_level = usage.alert_level
    return volume


def operation_message(record: dict[str, Any]) -> volume_pb2.VolumeOperation:
    """A migration record as the contract shows it."""
    return volume_pb2.VolumeOperation(
        operation_id=record["operation_id"],
        volume_id=record["volume_id"],
        target_volume_id=record["target_volume_id"],
        mode=(
            volume_pb2.MIGRATION_MODE_MOVE
            if record["mode"] == "move"
            else volume_pb2.MIGRATION_MODE_COPY
        ),
        state=OPERATION_STATES[record["state"]],
        bytes_total=record["bytes_total"],
        bytes_done=record["bytes_done"],
        files_total=record["files_total"],
        files_done=record["files_done"],
        verify_integrity=record["verify_integrity"],
        checksum_mismatches=record["checksum_mismatches"],
        start_time=optional_timestamp(record["start_time"]),
        complete_time=optional_timestamp(record.get("complete_time")),
        error_message=record["error_message"],
    )


REINDEX_STATES = {
    "started": search_pb2.REINDEX_STATE_STARTED,
    "in_progress": search_pb2.REINDEX_STATE_IN_PROGRESS,
    "completed": search_pb2.REINDEX_STATE_COMPLETED,
    "failed": search_pb2.REINDEX_STATE_FAILED,
}


def index_health(settings: dict[str, Any]) -> search_pb2.IndexHealth.ValueType:
    """One node holds no replica: an index asking for replicas is yellow."""
    return search_pb2.INDEX_HEALTH_YELLOW if settings["replicas"] else search_pb2.INDEX_HEALTH_GREEN


def reindex_message(status: dict[str, Any]) -> search_pb2.ReindexStatus:
    """A reindex status as the contract shows it."""
    message = search_pb2.ReindexStatus(
        operation_id=status["operation_id"],
        state=REINDEX_STATES[status["state"]],
        documents_done=status["documents_done"],
        documents_total=status["documents_total"],
        start_time=optional_timestamp(datetime.fromisoformat(status["start_time"])),
        error_message=status["error_message"],
    )
    if status.get("complete_time"):
        message.complete_time.CopyFrom(
            optional_timestamp(datetime.fromisoformat(status["complete_time"]))  # type: ignore[arg-type]
        )
    return message
