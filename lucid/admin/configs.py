"""The system configuration: defaults, validated versioned updates (audited with old
and new values), backups sealed by a SHA-256 of their canonical JSON, and restores.

Ranges are the proto's rules (spec 06 §3), checked by the pipeline before a call
reaches here; this module owns versions, masks, checksums and the audit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.store.config import ConfigRecord, ConfigStore
from lucid.lib.canonical import canonical_json
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.audit import Client
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError

DEFAULTS: dict[str, Any] = {
    "max_sessions_per_user": 5,
    "session_timeout_seconds": 3600,
    "node_health_check_interval_seconds": 30,
    "blockchain_anchoring_interval_seconds": 600,
    "payout_processing_interval_seconds": 86400,
    "max_session_size_gb": 10,
    "audit_log_retention_days": 90,
    "enable_emergency_controls": True,
}


@dataclass(frozen=True)
class Change:
    """One field's change."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Backup:
    """A configuration backup."""

    backup_id: str
    values: dict[str, Any]
    sha256: str
    created_at: datetime


def checksum(values: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a configuration."""
    return hashlib.sha256(canonical_json(values)).hexdigest()


class Configs:
    """The configuration service."""

    def __init__(self, store: ConfigStore, audit: AuditLog, clock: Clock) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock

    async def current(self) -> ConfigRecord:
        """The configuration in force (the defaults until first changed)."""
        found = await self.store.current()
        return found or ConfigRecord(0, dict(DEFAULTS), None, "")

    async def update(
        self, given: dict[str, Any], fields: list[str], client: Client
    ) -> tuple[ConfigRecord, list[Change]]:
        """Sets ``fields`` to their ``given`` values (all non-zero ones if none named)."""
        unknown = [f for f in fields if f not in DEFAULTS]
        if unknown:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"unknown configuration field {unknown[0]}",
                field_violations=[
                    FieldViolation("update_mask", f"unknown field {f}") for f in unknown
                ],
            )
        chosen = fields or [f for f in DEFAULTS if given.get(f)]
        return await self._apply({f: given[f] for f in chosen}, client, "update")

    async def backup(self) -> Backup:
        """The configuration in force, with its checksum."""
        values = (await self.current()).values
        return Backup(new_id(), values, checksum(values), self.clock.now())

    async def restore(
        self, values: dict[str, Any], sha256: str, reason: str, client: Client
    ) -> tuple[ConfigRecord, list[Change]]:
        """Puts a backup back, if its checksum matches its content."""
        if checksum(values) != sha256:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                "the backup does not match its checksum",
                field_violations=[FieldViolation("backup.sha256", "does not match the config")],
            )
        return await self._apply(values, client, "restore", reason)

    async def _apply(
        self, values: dict[str, Any], client: Client, how: str, reason: str = ""
    ) -> tuple[ConfigRecord, list[Change]]:
        before = await self.current()
        after = {**before.values, **values}
        changes = [
            Change(f, before.values.get(f), after[f])
            for f in DEFAULTS
            if before.values.get(f) != after[f]
        ]
        record = before
        if changes:
            record = ConfigRecord(before.version + 1, after, self.clock.now(), client.user_id)
            await self.store.save(record)
        await self.audit.record(
            NewEntry.of(
                client,
                action="update",
                resource="config",
                resource_id=f"v{record.version}",
                details={
                    "how": how,
                    "reason": reason,
                    "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in changes],
                },
                severity="warning" if how == "restore" else "info",
                risk_level="high",
            )
        )
        return record, changes
