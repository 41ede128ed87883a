"""The collections the storage cluster owns (all prefixed ``storage_``)."""

from __future__ import annotations

from lucid.runtime.schema import CollectionSpec, IndexSpec

DECLARATIONS = "storage_schema_declarations"
BACKUPS = "storage_backups"
RESTORES = "storage_restores"
SCHEDULES = "storage_backup_schedules"
VOLUMES = "storage_volumes"
VOLUME_OPERATIONS = "storage_volume_operations"
VOLUME_SAMPLES = "storage_volume_samples"
AUDIT = "storage_audit_events"

SAMPLE_RETENTION_S = 31 * 24 * 3600
"""Volume usage samples are kept for the longest usage period (30 days) and a day."""

COLLECTIONS = (
    CollectionSpec(
        DECLARATIONS, (IndexSpec((("cluster", 1),), "cluster_unique", unique=True),), "storage"
    ),
    CollectionSpec(
        BACKUPS,
        (
            IndexSpec((("backup_id", 1),), "backup_id_unique", unique=True),
            IndexSpec((("create_time", -1),), "create_time"),
            IndexSpec((("expire_time", 1),), "expire_time"),
        ),
        "storage",
    ),
    CollectionSpec(
        RESTORES, (IndexSpec((("restore_id", 1),), "restore_id_unique", unique=True),), "storage"
    ),
    CollectionSpec(
        SCHEDULES,
        (
            IndexSpec((("schedule_id", 1),), "schedule_id_unique", unique=True),
            IndexSpec((("enabled", 1), ("next_run_time", 1)), "due"),
        ),
        "storage",
    ),
    CollectionSpec(
        VOLUMES,
        (
            IndexSpec((("volume_id", 1),), "volume_id_unique", unique=True),
            IndexSpec((("name", 1),), "name_unique", unique=True),
        ),
        "storage",
    ),
    CollectionSpec(
        VOLUME_OPERATIONS,
        (IndexSpec((("operation_id", 1),), "operation_id_unique", unique=True),),
        "storage",
    ),
    CollectionSpec(
        VOLUME_SAMPLES,
        (
            IndexSpec((("volume_id", 1), ("sample_time", 1)), "volume_time"),
            IndexSpec((("sample_time", 1),), "sample_time_ttl", ttl_seconds=SAMPLE_RETENTION_S),
        ),
        "storage",
    ),
    CollectionSpec(
        AUDIT,
        (
            IndexSpec((("event_time", -1),), "event_time"),
            IndexSpec((("action", 1), ("event_time", -1)), "action_time"),
        ),
        "storage",
    ),
)
