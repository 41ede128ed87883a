"""Backups and restores of the Lucid database (spec 08 §2, §8) and their records.

A backup runs in the background: its record is ``in_progress`` until every
chosen collection is written (``backupformat``) and ends ``completed`` or
``failed`` (partial files removed). Retention: each backup expires
``retention_days`` after it started and ``sweep_expired`` deletes it. A restore
verifies the whole backup first (a corrupted one is refused, nothing written),
then writes in the background: documents are inserted as the raw BSON they were
read as, so a restore reproduces them exactly, and the collection's indexes are
recreated.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.lib.sealing import Sealer
from lucid.runtime.datastores import find_page
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.runtime.schema import create_collection
from lucid.storage import backupformat as fmt
from lucid.storage.background import BackgroundTasks
from lucid.storage.backupformat import BackupCorruptedError, CollectionEntry, Manifest
from lucid.storage.schema import BACKUPS, RESTORES
from lucid.storage.usage import sha256_file
from lucid.storage.v1 import backup_pb2
from lucid.storage.validation import create_index, index_of, spec_of

log = logging.getLogger("lucid.storage.backups")

DEFAULT_RETENTION_DAYS = 30
DUPLICATE_KEY = 11000

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"


def _index_document(info: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": info["name"],
        "key": [[k, v] for k, v in dict(info["key"]).items()],
        "unique": bool(info.get("unique", False)),
        "sparse": bool(info.get("sparse", False)),
    }
    if "expireAfterSeconds" in info:
        doc["expireAfterSeconds"] = int(info["expireAfterSeconds"])
    return doc


class Backups(BackgroundTasks):
    """Creates, lists, deletes, expires and restores backups."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        root: Path,
        sealer: Callable[[], Sealer],
        clock: Clock,
    ) -> None:
        self.client = client
        self.database = database
        self.db: AsyncDatabase[dict[str, Any]] = client[database]
        self.records = self.db[BACKUPS]
        self.restores = self.db[RESTORES]
        self.root = root
        self._sealer_factory = sealer
        self._sealer: Sealer | None = None
        self.clock = clock
        super().__init__()
        self.instance = new_id()
        """Marks the work of this process; ``recover`` fails only other processes' work."""

    def sealer(self) -> Sealer:
        """The sealer of the passphrase (made once)."""
        if self._sealer is None:
            self._sealer = self._sealer_factory()
        return self._sealer

    async def recover(self) -> int:
        """Marks backups and restores that an earlier process left running as failed."""
        now = self.clock.now()
        interrupted = {
            "$set": {"state": FAILED, "complete_time": now, "error_message": "interrupted"}
        }
        others = {"instance": {"$ne": self.instance}}
        first = await self.records.update_many({"state": IN_PROGRESS, **others}, interrupted)
        second = await self.restores.update_many(
            {"state": {"$in": ["started", IN_PROGRESS]}, **others}, interrupted
        )
        return first.modified_count + second.modified_count

    # -- backups --------------------------------------------------------------------

    async def create(
        self,
        *,
        name: str,
        backup_type: int,
        collections: Sequence[str],
        compression: bool,
        encryption: bool,
        retention_days: int,
        schedule_id: str = "",
    ) -> dict[str, Any]:
        """Checks the request, records the backup ``in_progress`` and starts it."""
        if backup_type not in (backup_pb2.BACKUP_TYPE_UNSPECIFIED, backup_pb2.BACKUP_TYPE_FULL):
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_ALLOWED,
                "incremental and differential backups need an oplog; a single node has none: "
                "make a full backup",
            )
        existing = set(await self.db.list_collection_names())
        chosen = list(dict.fromkeys(collections)) or sorted(
            n for n in existing if not n.startswith("system.")
        )
        unknown = [n for n in chosen if n not in existing]
        if unknown:
            raise not_found(f"collection {unknown[0]}")
        await self._check_space(chosen)
        now = self.clock.now()
        record = {
            "backup_id": new_id(),
            "name": name,
            "type": "full",
            "state": IN_PROGRESS,
            "collections": list(collections),
            "chosen": chosen,
            "database": self.database,
            "compression": compression,
            "encryption": encryption,
            "retention_days": retention_days,
            "size_bytes": 0,
            "document_count": 0,
            "checksum": "",
            "schedule_id": schedule_id,
            "instance": self.instance,
            "create_time": now,
            "expire_time": now + timedelta(days=retention_days),
            "error_message": "",
        }
        await self.records.insert_one(record)
        self.spawn(self._run(record))
        record.pop("_id", None)
        return record

    async def _check_space(self, collections: Sequence[str]) -> None:
        needed = 0
        for name in collections:
            try:
                stats = await self.db.command("collStats", name)
            except PyMongoError:
                continue
            needed += int(stats.get("size", 0))
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if needed > free:
            raise LucidError(
                ErrorCode.ERROR_CODE_STORAGE_INSUFFICIENT_SPACE,
                f"the backup needs about {needed} bytes and {free} are free",
            )

    async def _run(self, record: dict[str, Any]) -> None:
        backup_id = record["backup_id"]
        directory = self.root / backup_id
        try:
            checksum, size, count = await self._write(record, directory)
        except Exception as exc:
            log.exception("backup failed", extra={"backup_id": backup_id})
            await asyncio.to_thread(shutil.rmtree, directory, True)
            await self.records.update_one(
                {"backup_id": backup_id},
                {
                    "$set": {
                        "state": FAILED,
                        "complete_time": self.clock.now(),
                        "error_message": str(exc)[:500] or type(exc).__name__,
                    }
                },
            )
            return
        await self.records.update_one(
            {"backup_id": backup_id},
            {
                "$set": {
                    "state": COMPLETED,
                    "complete_time": self.clock.now(),
                    "checksum": checksum,
                    "size_bytes": size,
                    "document_count": count,
                }
            },
        )

    async def _write(self, record: dict[str, Any], directory: Path) -> tuple[str, int, int]:
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=False)
        sealer = await asyncio.to_thread(self.sealer) if record["encryption"] else None
        key, sealed_key = await asyncio.to_thread(fmt.new_data_key, sealer)
        manifest = Manifest(
            backup_id=record["backup_id"],
            database=self.database,
            created=record["create_time"].isoformat(),
            compression=record["compression"],
            encryption=record["encryption"],
            sealed_key=sealed_key,
        )
        codec = fmt.FrameCodec(compression=record["compression"], key=key)
        raw_db = cast(
            AsyncDatabase[RawBSONDocument],
            self.client.get_database(self.database, codec_options=fmt.RAW),
        )
        total_size = total_docs = 0
        for number, name in enumerate(record["chosen"]):
            entry = CollectionEntry(name=name, file=fmt.file_name(number, manifest))
            entry.indexes = [
                _index_document(dict(info))
                async for info in await self.db[name].list_indexes()
                if info["name"] != "_id_"
            ]
            path = directory / entry.file
            with path.open("wb") as out:
                batch: list[bytes] = []
                batch_size = 0
                async for document in raw_db[name].find({}, sort=[("_id", 1)]):
                    raw = bytes(document.raw)
                    batch.append(raw)
                    batch_size += len(raw)
                    entry.documents += 1
                    if batch_size >= fmt.FRAME_TARGET_BYTES:
                        await asyncio.to_thread(out.write, codec.encode(b"".join(batch)))
                        batch, batch_size = [], 0
                if batch:
                    await asyncio.to_thread(out.write, codec.encode(b"".join(batch)))
            entry.size_bytes = path.stat().st_size
            entry.sha256 = await asyncio.to_thread(sha256_file, path)
            manifest.collections.append(entry)
            total_size += entry.size_bytes
            total_docs += entry.documents
        data = fmt.seal_manifest(manifest, key)
        (directory / fmt.MANIFEST).write_bytes(data)
        return fmt.manifest_checksum(data), total_size + len(data), total_docs

    async def get(self, backup_id: str) -> dict[str, Any]:
        """One backup record."""
        found = await self.records.find_one({"backup_id": backup_id}, {"_id": 0})
        if found is None:
            raise not_found(f"backup {backup_id}")
        return found

    async def find_page(
        self, *, state: str | None, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Backups newest first, and how many match."""
        query: dict[str, Any] = {"state": state} if state else {}
        return await find_page(
            self.records,
            query,
            [("create_time", -1)],
            offset=offset,
            limit=limit,
            projection={"_id": 0},
        )

    async def delete(self, backup_id: str) -> None:
        """Deletes a backup's files and record; a running backup cannot be deleted."""
        found = await self.records.find_one_and_delete(
            {"backup_id": backup_id, "state": {"$ne": IN_PROGRESS}}
        )
        if found is None:
            await self.get(backup_id)  # NOT_FOUND when absent
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "the backup is still in progress")
        await asyncio.to_thread(shutil.rmtree, self.root / backup_id, True)

    async def sweep_expired(self, now: datetime | None = None) -> int:
        """Deletes backups past their expiry; returns how many went."""
        now = now or self.clock.now()
        removed = 0
        async for record in self.records.find(
            {"expire_time": {"$lte": now}, "state": {"$ne": IN_PROGRESS}}, {"backup_id": 1}
        ):
            outcome = await self.records.delete_one({"backup_id": record["backup_id"]})
            if outcome.deleted_count:
                await asyncio.to_thread(shutil.rmtree, self.root / record["backup_id"], True)
                removed += 1
        return removed

    # -- restores -------------------------------------------------------------------

    async def restore(
        self,
        backup_id: str,
        *,
        target_database: str,
        collections: Sequence[str],
        drop_existing: bool,
        point_in_time: datetime | None,
    ) -> dict[str, Any]:
        """Verifies the backup (refusing a corrupted one) and starts writing it."""
        record = await self.get(backup_id)
        if record["state"] != COMPLETED:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"only a completed backup can be restored; this one is {record['state']}",
            )
        if (
            point_in_time is not None
            and abs((point_in_time - record["create_time"]).total_seconds()) >= 1
        ):
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_ALLOWED,
                "a single node has no oplog: only the backup's own time can be restored",
            )
        chosen = list(dict.fromkeys(collections))
        held = set(record["chosen"])
        unknown = [n for n in chosen if n not in held]
        if unknown:
            raise not_found(f"collection {unknown[0]} in backup {backup_id}")
        sealer = await asyncio.to_thread(self.sealer) if record["encryption"] else None
        try:
            verified = await asyncio.to_thread(
                fmt.verify, self.root / backup_id, record["checksum"], sealer, chosen
            )
        except BackupCorruptedError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_DATA_LOSS, f"backup {backup_id} is corrupted: {exc}"
            ) from exc
        restore = {
            "restore_id": new_id(),
            "backup_id": backup_id,
            "state": "started",
            "target_database": target_database or self.database,
            "collections": chosen,
            "drop_existing": drop_existing,
            "instance": self.instance,
            "documents_restored": 0,
            "start_time": self.clock.now(),
            "error_message": "",
        }
        await self.restores.insert_one(restore)
        restore.pop("_id", None)
        self.spawn(self._write_restore(restore, verified))
        return restore

    async def _write_restore(self, restore: dict[str, Any], backup: fmt.VerifiedBackup) -> None:
        restore_id = restore["restore_id"]
        await self.restores.update_one({"restore_id": restore_id}, {"$set": {"state": IN_PROGRESS}})
        target = self.client[restore["target_database"]]
        wanted = set(restore["collections"])
        restored = 0
        try:
            for entry in backup.manifest.collections:
                if wanted and entry.name not in wanted:
                    continue
                if restore["drop_existing"]:
                    await target.drop_collection(entry.name)
                await create_collection(target, entry.name)
                for payload in fmt.frames(backup.directory / entry.file):
                    docs = fmt.documents(backup.codec.decode(payload))
                    restored += await _insert(target, entry.name, docs)
                    await self.restores.update_one(
                        {"restore_id": restore_id}, {"$set": {"documents_restored": restored}}
                    )
                for index in entry.indexes:
                    await _create_index(target, entry.name, index)
        except Exception as exc:
            log.exception("restore failed", extra={"restore_id": restore_id})
            await self.restores.update_one(
                {"restore_id": restore_id},
                {
                    "$set": {
                        "state": FAILED,
                        "complete_time": self.clock.now(),
                        "documents_restored": restored,
                        "error_message": str(exc)[:500] or type(exc).__name__,
                    }
                },
            )
            return
        await self.restores.update_one(
            {"restore_id": restore_id},
            {
                "$set": {
                    "state": COMPLETED,
                    "complete_time": self.clock.now(),
                    "documents_restored": restored,
                }
            },
        )

    async def get_restore(self, restore_id: str) -> dict[str, Any]:
        """One restore record."""
        found = await self.restores.find_one({"restore_id": restore_id}, {"_id": 0})
        if found is None:
            raise not_found(f"restore {restore_id}")
        return found


async def _insert(db: AsyncDatabase[dict[str, Any]], collection: str, docs: list[Any]) -> int:
    """Inserts raw documents, keeping those already there (without drop_existing)."""
    if not docs:
        return 0
    try:
        await db[collection].insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return int(exc.details.get("nInserted", 0))
    return len(docs)


async def _create_index(
    db: AsyncDatabase[dict[str, Any]], collection: str, index: dict[str, Any]
) -> None:
    info = {**index, "key": {name: value for name, value in index["key"]}}
    await create_index(db, collection, spec_of(index_of(info)))
