"""Storage: the time of a backup and of a verified restore of 20,000 small documents
(BSON → zstd → secretbox → SHA-256 and back, against FerretDB), and of a
ValidateSchema over the mesh's declarations."""

from __future__ import annotations

import asyncio
import logging
import time

from bench.common import BenchContext, Figure
from lucid.common.v1 import access_pb2
from lucid.storage.v1 import backup_pb2, backup_pb2_grpc, schema_pb2, schema_pb2_grpc
from tests.support import bearer

DOCUMENTS = 20_000
VALIDATIONS = 20


async def _until(check, done, timeout_s: float = 600.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


async def run(ctx: BenchContext) -> list[Figure]:
    logging.getLogger("lucid.rpc").setLevel(logging.WARNING)
    mesh = ctx.mesh
    await mesh.start("storage")
    db = mesh.servers["storage"].runtime.datastores.db
    await db["bench_docs"].insert_many(
        [
            {"n": i, "name": f"document {i}", "tags": ["a", "b"], "v": i * 1.5}
            for i in range(DOCUMENTS)
        ]
    )
    metadata = bearer(await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN))
    figures: list[Figure] = []
    async with mesh.channel("storage") as channel:
        stub = backup_pb2_grpc.BackupServiceStub(channel)
        started = time.perf_counter()
        made = await stub.CreateBackup(
            backup_pb2.CreateBackupRequest(name="bench", collections=["bench_docs"]),
            metadata=metadata,
        )

        async def backup() -> backup_pb2.Backup:
            reply = await stub.GetBackup(
                backup_pb2.GetBackupRequest(backup_id=made.backup.backup_id), metadata=metadata
            )
            return reply.backup

        done = await _until(backup, lambda b: b.state != backup_pb2.BACKUP_STATE_IN_PROGRESS)
        backup_s = time.perf_counter() - started
        figures.append(Figure(f"backup of {DOCUMENTS} documents", backup_s * 1000, "ms"))
        figures.append(Figure("backup size", done.size_bytes / 1024, "KiB"))
        started = time.perf_counter()
        restore = await stub.RestoreBackup(
            backup_pb2.RestoreBackupRequest(
                backup_id=done.backup_id, drop_existing=True, confirm=True
            ),
            metadata=metadata,
        )

        async def restored() -> backup_pb2.Restore:
            reply = await stub.GetRestore(
                backup_pb2.GetRestoreRequest(restore_id=restore.restore.restore_id),
                metadata=metadata,
            )
            return reply.restore

        await _until(restored, lambda r: r.state == backup_pb2.RESTORE_STATE_COMPLETED)
        restore_s = time.perf_counter() - started
        figures.append(Figure(f"verified restore of {DOCUMENTS} documents", restore_s * 1000, "ms"))
        schema = schema_pb2_grpc.SchemaServiceStub(channel)
        started = time.perf_counter()
        for _ in range(VALIDATIONS):
            await schema.ValidateSchema(schema_pb2.ValidateSchemaRequest(), metadata=metadata)
        figures.append(
            Figure(
                "ValidateSchema (mean)",
                (time.perf_counter() - started) * 1000 / VALIDATIONS,
                "ms",
            )
        )
    return figures
