"""Storage volumes: directories under ``var/volumes`` with logical quotas (spec 08 §8).

The blob volume (``settings.blob_dir``, purpose ``chunks``) is registered at
start as a system volume: it can be resized but not deleted. Usage comes from
du and statvfs (``usage``); resizing changes only the quota and never below the
use; migrating copies every file to the target volume and, with
``verify_integrity``, compares SHA-256s; a move removes the source files only
after every file verified. A sampler records usage for ``GetVolumeUsage``.
Only local volumes exist on one machine: network and cloud volumes and
encryption at rest (LUKS) are refused with FAILED_PRECONDITION.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.storage.background import BackgroundTasks
from lucid.storage.store.probes import BlobVolume
from lucid.storage.store.volumes import VolumeNameTakenError, VolumeStore
from lucid.storage.usage import DirectoryUsage, measure, sha256_file
from lucid.storage.v1 import volume_pb2

log = logging.getLogger("lucid.storage.volumes")

GIB = 1024**3
MAX_QUOTA = 500 * GIB
"""VOLUME_SIZE_LIMIT_GB (spec 08 §4)."""
BLOB_VOLUME_NAME = "blobs"
PERIODS: dict[volume_pb2.UsagePeriod.ValueType, timedelta] = {
    volume_pb2.USAGE_PERIOD_UNSPECIFIED: timedelta(hours=24),
    volume_pb2.USAGE_PERIOD_1H: timedelta(hours=1),
    volume_pb2.USAGE_PERIOD_24H: timedelta(hours=24),
    volume_pb2.USAGE_PERIOD_7D: timedelta(days=7),
    volume_pb2.USAGE_PERIOD_30D: timedelta(days=30),
}
STATES = {
    "active": volume_pb2.VOLUME_STATE_ACTIVE,
    "inactive": volume_pb2.VOLUME_STATE_INACTIVE,
    "maintenance": volume_pb2.VOLUME_STATE_MAINTENANCE,
    "error": volume_pb2.VOLUME_STATE_ERROR,
}
STATE_NAMES = {number: name for name, number in STATES.items()}


def _not_allowed(message: str) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_NOT_ALLOWED, message)


class Volumes(BackgroundTasks):
    """Volume records, their directories and migrations."""

    def __init__(self, store: VolumeStore, root: Path, blob: BlobVolume, clock: Clock) -> None:
        self.store = store
        self.root = root
        self.blob = blob
        self.clock = clock
        super().__init__()

    async def register_blob_volume(self, quota_override: int | None) -> dict[str, Any]:
        """Records the blob volume (once) and loads its quota into ``blob``."""
        self.blob.path.mkdir(parents=True, exist_ok=True)
        now = self.clock.now()
        default = min(MAX_QUOTA, shutil.disk_usage(self.blob.path).total)
        found = await self.store.register(
            BLOB_VOLUME_NAME,
            {
                "volume_id": new_id(),
                "type": "local",
                "state": "active",
                "size_bytes": default,
                "file_system": "ext4",
                "encryption": False,
                "purpose": "chunks",
                "system": True,
                "create_time": now,
                "update_time": now,
            },
            str(self.blob.path.resolve()),
        )
        if quota_override is not None and found["size_bytes"] != quota_override:
            changed = await self.store.update(
                {"name": BLOB_VOLUME_NAME}, {"size_bytes": quota_override, "update_time": now}
            )
            assert changed is not None
            found = changed
        self.blob.quota_bytes = int(found["size_bytes"])
        return found

    async def create(
        self, *, name: str, size_bytes: int, volume_type: int, file_system: str,
        encryption: bool, purpose: str,
    ) -> dict[str, Any]:  # fmt: skip
        """A new local volume: its directory and record."""
        if volume_type != volume_pb2.VOLUME_TYPE_LOCAL:
            raise _not_allowed("only local volumes exist on this machine")
        if encryption:
            raise _not_allowed("encryption at rest needs LUKS, which this machine lacks")
        self.root.mkdir(parents=True, exist_ok=True)
        total = shutil.disk_usage(self.root).total
        if size_bytes > total:
            raise LucidError(
                ErrorCode.ERROR_CODE_STORAGE_INSUFFICIENT_SPACE,
                f"the quota {size_bytes} exceeds the file system ({total} bytes)",
            )
        volume_id = new_id()
        now = self.clock.now()
        record = {
            "volume_id": volume_id,
            "name": name,
            "type": "local",
            "state": "active",
            "size_bytes": size_bytes,
            "file_system": file_system or "ext4",
            "encryption": False,
            "mount_path": str((self.root / volume_id).resolve()),
            "purpose": purpose,
            "system": False,
            "create_time": now,
            "update_time": now,
        }
        try:
            await self.store.insert(record)
        except VolumeNameTakenError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"a volume named {name} exists"
            ) from exc
        (self.root / volume_id).mkdir(parents=True, exist_ok=True)
        return record

    async def get(self, volume_id: str) -> dict[str, Any]:
        """A volume record."""
        found = await self.store.get(volume_id)
        if found is None:
            raise not_found(f"volume {volume_id}")
        return found

    async def usage(self, record: Mapping[str, Any]) -> DirectoryUsage | None:
        """A volume's usage now (``None`` when its directory is gone)."""
        return await asyncio.to_thread(
            _measure, Path(record["mount_path"]), int(record["size_bytes"])
        )

    async def find_page(
        self, *, state: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Volumes by name, and how many match."""
        return await self.store.page(state=state, offset=offset, limit=limit)

    async def update(self, volume_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Changes name, state or purpose."""
        if not changes:
            return await self.get(volume_id)
        try:
            found = await self.store.update(
                {"volume_id": volume_id}, {**changes, "update_time": self.clock.now()}
            )
        except VolumeNameTakenError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"a volume named {changes['name']} exists"
            ) from exc
        if found is None:
            raise not_found(f"volume {volume_id}")
        return found

    async def delete(self, volume_id: str, *, force: bool) -> None:
        """Deletes a volume; one holding files needs ``force``; the blob volume stays."""
        record = await self.get(volume_id)
        if record.get("system"):
            raise _not_allowed("the blob volume cannot be deleted")
        usage = await self.usage(record)
        if usage is not None and usage.file_count and not force:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"the volume holds {usage.file_count} files; delete with force to remove them",
            )
        await self.store.delete(volume_id)
        await asyncio.to_thread(shutil.rmtree, record["mount_path"], True)

    async def resize(self, volume_id: str, new_size: int) -> dict[str, Any]:
        """Changes the quota; never below what the volume holds."""
        record = await self.get(volume_id)
        usage = await self.usage(record)
        if usage is not None and usage.used_bytes > new_size:
            raise LucidError(
                ErrorCode.ERROR_CODE_STORAGE_INSUFFICIENT_SPACE,
                f"the volume holds {usage.used_bytes} bytes, more than {new_size}",
            )
        updated = await self.update(volume_id, {"size_bytes": new_size})
        if updated.get("system"):
            self.blob.quota_bytes = new_size
        return updated

    async def history(
        self, volume_id: str, period: volume_pb2.UsagePeriod.ValueType
    ) -> list[tuple[datetime, int]]:
        """Usage samples of the period, oldest first."""
        since = self.clock.now() - PERIODS[period]
        return await self.store.samples_since(volume_id, since)

    async def sample_all(self) -> int:
        """Records every volume's usage now; returns how many were sampled."""
        count = 0
        now = self.clock.now()
        for record in await self.store.all():
            usage = await self.usage(record)
            if usage is None:
                continue
            await self.store.add_sample(record["volume_id"], now, usage.used_bytes)
            count += 1
        return count

    async def run_sampler(self, interval_s: float = 300.0) -> None:
        """The sampler task."""
        while True:
            try:
                await self.sample_all()
            except Exception:
                log.debug("usage sampling failed", exc_info=True)
            await asyncio.sleep(interval_s)

    # -- migration ------------------------------------------------------------------

    async def migrate(
        self, volume_id: str, target_id: str, *, move: bool, verify: bool
    ) -> dict[str, Any]:
        """Checks room on the target and starts copying."""
        source = await self.get(volume_id)
        target = await self.get(target_id)
        if target["state"] != "active":
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "the target volume is not active")
        source_usage = await self.usage(source)
        target_usage = await self.usage(target)
        if source_usage is None or target_usage is None:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "a volume's directory is missing")
        if source_usage.used_bytes > target_usage.free_bytes:
            raise LucidError(
                ErrorCode.ERROR_CODE_STORAGE_INSUFFICIENT_SPACE,
                f"the target has {target_usage.free_bytes} bytes free; "
                f"{source_usage.used_bytes} are needed",
            )
        if move and source.get("system"):
            raise _not_allowed("the blob volume's files cannot be moved away")
        operation = {
            "operation_id": new_id(),
            "volume_id": volume_id,
            "target_volume_id": target_id,
            "mode": "move" if move else "copy",
            "state": "started",
            "bytes_total": source_usage.used_bytes,
            "bytes_done": 0,
            "files_total": source_usage.file_count,
            "files_done": 0,
            "verify_integrity": verify,
            "checksum_mismatches": 0,
            "start_time": self.clock.now(),
            "error_message": "",
        }
        await self.store.add_operation(operation)
        self.spawn(self._copy(operation, Path(source["mount_path"]), Path(target["mount_path"])))
        return operation

    async def _copy(self, operation: dict[str, Any], source: Path, target: Path) -> None:
        operation_id = operation["operation_id"]
        await self.store.set_operation(operation_id, {"state": "in_progress"})
        try:
            done_bytes, done_files, mismatches = await asyncio.to_thread(
                copy_tree, source, target, operation["verify_integrity"]
            )
            state, error = "completed", ""
            if mismatches:
                state, error = "failed", f"{mismatches} files differ after the copy"
            elif operation["mode"] == "move":
                await asyncio.to_thread(_empty_directory, source)
        except OSError as exc:
            log.exception("migration failed", extra={"operation_id": operation_id})
            done_bytes = done_files = mismatches = 0
            state, error = "failed", str(exc)[:500]
        await self.store.set_operation(
            operation_id,
            {
                "state": state,
                "bytes_done": done_bytes,
                "files_done": done_files,
                "checksum_mismatches": mismatches,
                "complete_time": self.clock.now(),
                "error_message": error,
            },
        )

    async def get_operation(self, operation_id: str) -> dict[str, Any]:
        """A migration record."""
        found = await self.store.operation(operation_id)
        if found is None:
            raise not_found(f"volume operation {operation_id}")
        return found


def copy_tree(source: Path, target: Path, verify: bool) -> tuple[int, int, int]:
    """Copies every file of ``source`` under ``target``; returns bytes, files and
    (with ``verify``) how many copies differ from their source by SHA-256."""
    done_bytes = done_files = mismatches = 0
    for root, _dirs, names in os.walk(source):
        relative = Path(root).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in names:
            origin = Path(root) / name
            copy = target / relative / name
            shutil.copy2(origin, copy)
            if verify and sha256_file(origin) != sha256_file(copy):
                mismatches += 1
            done_bytes += copy.stat().st_size
            done_files += 1
    return done_bytes, done_files, mismatches


def _empty_directory(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _measure(path: Path, quota_bytes: int) -> DirectoryUsage | None:
    return measure(path, quota_bytes) if path.is_dir() else None
