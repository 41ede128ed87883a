"""Backups against real FerretDB: exact restores of varied BSON, corruption refused
with nothing restored, retention, schedules, the backup rate limit."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import bson
import grpc
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.database import AsyncDatabase

from lucid.storage import backupformat
from lucid.storage.servicers.backup import BackupServicer
from lucid.storage.v1 import backup_pb2
from tests.storage_support import Stubs, admin_metadata, component, eventually
from tests.support import Mesh, details

COMPLETED = backup_pb2.BACKUP_STATE_COMPLETED


@pytest.fixture(scope="module")
async def storage(mesh: Mesh) -> Mesh:
    await mesh.start("storage")
    return mesh


def _db(mesh: Mesh) -> AsyncDatabase[dict[str, Any]]:
    return mesh.servers["storage"].runtime.datastores.db


def _documents() -> list[dict[str, Any]]:
    """Varied BSON that FerretDB v1 stores (it refuses Decimal128, arrays directly inside
    arrays, MinKey/MaxKey and Code; ``test_format_round_trips_every_bson_type`` covers
    those without a server)."""
    when = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)
    return [
        {
            "_id": ObjectId(),
            "at": when,
            "blob": Binary(b"\x00\x01\xffbinary", 0),
            "uuid": Binary(uuid.uuid4().bytes, 4),
            "custom": Binary(b"user-defined", 128),
            "nested": {"list": [1, {"inner": [2, {"deep": [3, "yes"]}]}, None, True], "f": 1.5},
            "big": Int64(2**62),
            "pattern": Regex("^lu", "i"),
            "stamp": Timestamp(1_700_000_000, 7),
            "negative_zero": -0.0,
            "text": "héllo ✓",
        },
        {"_id": "string-id", "empty": {}, "arr": [], "at": when + timedelta(days=1)},
        {"_id": 7, "neg": -1, "order": {"z": 1, "a": 2, "m": 3}},
    ]


async def _raw(db: AsyncDatabase[dict[str, Any]], name: str) -> list[bytes]:
    raw = db.client.get_database(db.name, codec_options=CodecOptions(RawBSONDocument))
    return sorted([bytes(d.raw) async for d in raw[name].find({})])


async def _completed(stubs: Stubs, metadata: Any, backup_id: str) -> backup_pb2.Backup:
    async def get() -> backup_pb2.Backup:
        reply = await stubs.backup.GetBackup(
            backup_pb2.GetBackupRequest(backup_id=backup_id), metadata=metadata
        )
        return reply.backup

    return await eventually(get, lambda b: b.state != backup_pb2.BACKUP_STATE_IN_PROGRESS)


async def _backup(stubs: Stubs, metadata: Any, collections: list[str], **options: Any) -> str:
    reply = await stubs.backup.CreateBackup(
        backup_pb2.CreateBackupRequest(name="test", collections=collections, **options),
        metadata=metadata,
    )
    assert reply.backup.state == backup_pb2.BACKUP_STATE_IN_PROGRESS
    done = await _completed(stubs, metadata, reply.backup.backup_id)
    assert done.state == COMPLETED, done.error_message
    return done.backup_id


async def _restore(stubs: Stubs, metadata: Any, backup_id: str, **options: Any) -> Any:
    reply = await stubs.backup.RestoreBackup(
        backup_pb2.RestoreBackupRequest(backup_id=backup_id, confirm=True, **options),
        metadata=metadata,
    )

    async def get() -> backup_pb2.Restore:
        got = await stubs.backup.GetRestore(
            backup_pb2.GetRestoreRequest(restore_id=reply.restore.restore_id), metadata=metadata
        )
        return got.restore

    return await eventually(
        get,
        lambda r: r.state in (backup_pb2.RESTORE_STATE_COMPLETED, backup_pb2.RESTORE_STATE_FAILED),
    )


async def test_backup_change_restore_reproduces_the_snapshot(storage: Mesh) -> None:
    db = _db(storage)
    await db["bk_things"].insert_many(_documents())
    await db["bk_things"].create_index([("at", -1)], name="at_desc")
    snapshot = await _raw(db, "bk_things")
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stubs = Stubs(channel)
        backup_id = await _backup(stubs, metadata, ["bk_things"])
        backup = await _completed(stubs, metadata, backup_id)
        assert backup.document_count == 3 and backup.encryption and backup.compression
        assert len(backup.checksum) == 64
        assert backup.expire_time.ToDatetime(tzinfo=UTC) - backup.create_time.ToDatetime(
            tzinfo=UTC
        ) == timedelta(days=30)
        await db["bk_things"].delete_one({"_id": 7})
        await db["bk_things"].update_one({"_id": "string-id"}, {"$set": {"changed": True}})
        await db["bk_things"].insert_one({"_id": "new"})
        restore = await _restore(stubs, metadata, backup_id, drop_existing=True)
        assert restore.state == backup_pb2.RESTORE_STATE_COMPLETED, restore.error_message
        assert restore.documents_restored == 3
    assert await _raw(db, "bk_things") == snapshot
    names = {ix["name"] async for ix in await db["bk_things"].list_indexes()}
    assert "at_desc" in names


async def test_restore_into_another_database(storage: Mesh) -> None:
    db = _db(storage)
    await db["bk_other"].insert_many(_documents())
    snapshot = await _raw(db, "bk_other")
    target = f"{db.name}_restored"
    metadata = await admin_metadata(storage)
    try:
        async with storage.channel("storage") as channel:
            stubs = Stubs(channel)
            backup_id = await _backup(stubs, metadata, ["bk_other"], compression=False)
            restore = await _restore(stubs, metadata, backup_id, target_database=target)
            assert restore.state == backup_pb2.RESTORE_STATE_COMPLETED
        assert await _raw(db.client[target], "bk_other") == snapshot
    finally:
        await db.client.drop_database(target)


async def test_encrypted_backup_is_not_plaintext(storage: Mesh) -> None:
    db = _db(storage)
    marker = "plaintext-marker-" + uuid.uuid4().hex
    await db["bk_secret"].insert_many([{"secret": marker, "n": i} for i in range(50)])
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stubs = Stubs(channel)
        encrypted = await _backup(stubs, metadata, ["bk_secret"], compression=False)
        clear = await _backup(stubs, metadata, ["bk_secret"], compression=False, encryption=False)
    root = storage.settings.var_dir / "backups"
    encrypted_bytes = b"".join(p.read_bytes() for p in (root / encrypted).iterdir())
    clear_bytes = b"".join(p.read_bytes() for p in (root / clear).iterdir())
    assert marker.encode() not in encrypted_bytes
    assert marker.encode() in clear_bytes  # the check can fail: the marker is findable


def _collection_file(root: Path, backup_id: str) -> Path:
    return next(p for p in (root / backup_id).iterdir() if p.name != backupformat.MANIFEST)


@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest"])
async def test_corrupted_backup_is_refused_and_nothing_restored(storage: Mesh, damage: str) -> None:
    db = _db(storage)
    name = f"bk_corrupt_{damage}"
    await db[name].insert_many([{"n": i, "pad": "x" * 200} for i in range(200)])
    metadata = await admin_metadata(storage)
    root = storage.settings.var_dir / "backups"
    async with storage.channel("storage") as channel:
        stubs = Stubs(channel)
        backup_id = await _backup(stubs, metadata, [name])
        await db[name].delete_many({"n": {"$gte": 100}})
        if damage == "flip":
            path = _collection_file(root, backup_id)
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x01
            path.write_bytes(bytes(data))
        elif damage == "truncate":
            path = _collection_file(root, backup_id)
            path.write_bytes(path.read_bytes()[:-10])
        else:
            path = root / backup_id / backupformat.MANIFEST
            path.write_bytes(path.read_bytes().replace(b'"documents": 200', b'"documents": 201'))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.backup.RestoreBackup(
                backup_pb2.RestoreBackupRequest(
                    backup_id=backup_id, drop_existing=True, confirm=True
                ),
                metadata=metadata,
            )
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS
    assert details(caught.value).reason == "LUCID_ERR_5012"
    assert await db[name].count_documents({}) == 100  # untouched: not dropped, not restored


def test_format_round_trips_every_bson_type(tmp_path: Path) -> None:
    """The backup format keeps any BSON byte for byte, including the types FerretDB lacks."""
    from lucid.lib.sealing import Sealer

    documents = [
        {
            "_id": ObjectId(),
            "amount": Decimal128(Decimal("12345.678900")),
            "matrix": [[1, 2], [3, [4, [5]]]],
            "at": datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC),
            "low": MinKey(),
            "high": MaxKey(),
            "code": Code("function () { return 1; }"),
            "nan": float("nan"),
        },
        *_documents(),
    ]
    raw = [bson.encode(d) for d in documents]
    sealer = Sealer("pass", opslimit=1, memlimit=8192)
    key, sealed = backupformat.new_data_key(sealer)
    manifest = backupformat.Manifest("b", "db", "now", True, True, sealed)
    codec = backupformat.FrameCodec(compression=True, key=key)
    entry = backupformat.CollectionEntry("c", backupformat.file_name(0, manifest))
    path = tmp_path / entry.file
    path.write_bytes(codec.encode(b"".join(raw[:2])) + codec.encode(b"".join(raw[2:])))
    entry.documents, entry.size_bytes = len(raw), path.stat().st_size
    entry.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest.collections.append(entry)
    data = backupformat.seal_manifest(manifest, key)
    (tmp_path / backupformat.MANIFEST).write_bytes(data)
    verified = backupformat.verify(tmp_path, backupformat.manifest_checksum(data), sealer, [])
    back = [
        bytes(d.raw)
        for payload in backupformat.frames(path)
        for d in backupformat.documents(verified.codec.decode(payload))
    ]
    assert back == raw


def test_manifest_mac_catches_an_edit_that_keeps_the_recorded_hash(tmp_path: Path) -> None:
    """An edited manifest whose new hash is also recorded still fails its MAC."""
    from lucid.lib.sealing import Sealer

    sealer = Sealer("pass", opslimit=1, memlimit=8192)
    key, sealed = backupformat.new_data_key(sealer)
    manifest = backupformat.Manifest("b", "db", "now", True, True, sealed)
    data = backupformat.seal_manifest(manifest, key)
    (tmp_path / backupformat.MANIFEST).write_bytes(data)
    backupformat.verify(tmp_path, backupformat.manifest_checksum(data), sealer, [])
    edited = data.replace(b'"database": "db"', b'"database": "xx"')
    (tmp_path / backupformat.MANIFEST).write_bytes(edited)
    with pytest.raises(backupformat.BackupCorruptedError, match="MAC"):
        backupformat.verify(tmp_path, backupformat.manifest_checksum(edited), sealer, [])


async def test_bad_requests(storage: Mesh) -> None:
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stubs = Stubs(channel)
        for days in (0, 366):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stubs.backup.CreateBackup(
                    backup_pb2.CreateBackupRequest(name="r", retention_days=days),
                    metadata=metadata,
                )
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.backup.CreateBackup(
                backup_pb2.CreateBackupRequest(name="r", collections=["no_such_collection"]),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.backup.CreateBackup(
                backup_pb2.CreateBackupRequest(name="r", type=backup_pb2.BACKUP_TYPE_INCREMENTAL),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.backup.GetBackup(
                backup_pb2.GetBackupRequest(backup_id=str(uuid.uuid4())), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.backup.DeleteBackup(
                backup_pb2.DeleteBackupRequest(backup_id=str(uuid.uuid4())), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # no confirm


async def test_list_delete_and_retention(storage: Mesh) -> None:
    db = _db(storage)
    await db["bk_ret"].insert_one({"n": 1})
    metadata = await admin_metadata(storage)
    root = storage.settings.var_dir / "backups"
    backups = component(storage.servers["storage"], BackupServicer).backups
    async with storage.channel("storage") as channel:
        stubs = Stubs(channel)
        short = await _backup(stubs, metadata, ["bk_ret"], retention_days=1)
        kept = await _backup(stubs, metadata, ["bk_ret"], retention_days=2)
        listed = await stubs.backup.ListBackups(
            backup_pb2.ListBackupsRequest(state=COMPLETED, page_size=1000), metadata=metadata
        )
        ids = [b.backup_id for b in listed.backups]
        assert ids.index(kept) < ids.index(short)  # newest first
        removed = await backups.sweep_expired(datetime.now(UTC) + timedelta(days=1, minutes=1))
        assert removed >= 1
        assert not (root / short).exists() and (root / kept).exists()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.backup.GetBackup(
                backup_pb2.GetBackupRequest(backup_id=short), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        await stubs.backup.DeleteBackup(
            backup_pb2.DeleteBackupRequest(backup_id=kept, confirm=True), metadata=metadata
        )
        assert not (root / kept).exists()


async def test_schedules(storage: Mesh) -> None:
    metadata = await admin_metadata(storage)
    await _db(storage)["bk_sched"].insert_one({"n": 1})
    schedules = component(storage.servers["storage"], BackupServicer).schedules
    async with storage.channel("storage") as channel:
        stubs = Stubs(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.backup.CreateBackupSchedule(
                backup_pb2.CreateBackupScheduleRequest(name="bad", cron="61 * * * *"),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # passes the pattern, not the days
            await stubs.backup.CreateBackupSchedule(
                backup_pb2.CreateBackupScheduleRequest(name="bad", cron="0 0 31 2 *"),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        made = await stubs.backup.CreateBackupSchedule(
            backup_pb2.CreateBackupScheduleRequest(
                name="nightly", cron="0 2 * * *", collections=["bk_sched"], retention_days=7
            ),
            metadata=metadata,
        )
        next_run = made.schedule.next_run_time.ToDatetime(tzinfo=UTC)
        assert (next_run.hour, next_run.minute) == (2, 0)
        assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(days=1)
        started = await schedules.run_due(next_run)
        assert len(started) >= 1
        backup = await _completed(stubs, metadata, started[-1])
        assert backup.state == COMPLETED and backup.retention_days == 7
        listed = await stubs.backup.ListBackupSchedules(
            backup_pb2.ListBackupSchedulesRequest(), metadata=metadata
        )
        mine = next(s for s in listed.schedules if s.schedule_id == made.schedule.schedule_id)
        assert mine.last_backup_id in started
        assert mine.next_run_time.ToDatetime(tzinfo=UTC) == next_run + timedelta(days=1)
        assert await schedules.run_due(next_run) == []  # the slot is taken
        await stubs.backup.DeleteBackupSchedule(
            backup_pb2.DeleteBackupScheduleRequest(
                schedule_id=made.schedule.schedule_id, confirm=True
            ),
            metadata=metadata,
        )


async def test_twenty_first_backup_call_in_a_minute_is_refused(storage: Mesh) -> None:
    metadata = await admin_metadata(storage)  # a fresh caller
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).backup

        async def delete() -> None:
            await stub.DeleteBackup(
                backup_pb2.DeleteBackupRequest(backup_id=str(uuid.uuid4()), confirm=True),
                metadata=metadata,
            )

        for _ in range(20):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await delete()
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await delete()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = details(caught.value)
        assert info.reason == "LUCID_ERR_3001" and info.retry_after_s and info.retry_after_s <= 60
        # reads count as database operations, not against the backup changes: no error
        await stub.ListBackups(backup_pb2.ListBackupsRequest(), metadata=metadata)


async def test_recover_fails_only_work_of_earlier_processes(storage: Mesh) -> None:
    backups = component(storage.servers["storage"], BackupServicer).backups
    now = datetime.now(UTC)
    base = {"state": "in_progress", "create_time": now, "name": "r"}
    await backups.records.insert_many(
        [
            {**base, "backup_id": "earlier", "instance": "another-process"},
            {**base, "backup_id": "ours", "instance": backups.instance},
        ]
    )
    assert await backups.recover() >= 1
    states = {
        d["backup_id"]: d["state"]
        async for d in backups.records.find({"backup_id": {"$in": ["earlier", "ours"]}})
    }
    assert states == {"earlier": "failed", "ours": "in_progress"}
    await backups.records.delete_many({"backup_id": {"$in": ["earlier", "ours"]}})


async def test_restore_without_drop_keeps_existing_documents(storage: Mesh) -> None:
    db = _db(storage)
    await db["bk_merge"].insert_many([{"_id": i, "v": "old"} for i in range(5)])
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stubs = Stubs(channel)
        backup_id = await _backup(stubs, metadata, ["bk_merge"])
        await db["bk_merge"].delete_one({"_id": 0})
        await db["bk_merge"].update_one({"_id": 1}, {"$set": {"v": "new"}})
        restore = await _restore(stubs, metadata, backup_id)
        assert restore.state == backup_pb2.RESTORE_STATE_COMPLETED, restore.error_message
        assert restore.documents_restored == 1
    found = {d["_id"]: d["v"] async for d in db["bk_merge"].find({})}
    assert found == {0: "old", 1: "new", 2: "old", 3: "old", 4: "old"}
