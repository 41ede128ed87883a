"""Cluster 08, storage and database: wiring of its server.

The data cluster: schema declarations (every cluster's server sends its own,
see ``lucid.runtime.schema.SchemaDeclarer``) and their validation against
MongoDB, Redis and the blob volume; database health and statistics; collection
and index administration; encrypted logical backups, restores and cron
schedules; Redis key administration with SCAN; volumes with logical quotas.
Every write rpc is audited (``storage_audit_events``) and rate limited per
caller. Search runs on SQLite FTS5 under ``var/search`` in place of
Elasticsearch (deferred by DECISIONS).
Owns the proto package ``lucid.storage.v1``, the ``storage_*`` collections and
the Redis prefix ``lucid:storage:``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from lucid.lib.sealing import Sealer
from lucid.runtime.audit import AuditTrail
from lucid.runtime.limits import RateLimiter
from lucid.runtime.server import ClusterApp, Runtime
from lucid.storage.backups import Backups
from lucid.storage.indices import SearchIndices
from lucid.storage.ratelimit import CallerLimits
from lucid.storage.schedules import Schedules
from lucid.storage.schema import AUDIT, COLLECTIONS, DECLARATIONS, SCHEDULES
from lucid.storage.servicers.backup import BackupServicer
from lucid.storage.servicers.cache import CacheServicer
from lucid.storage.servicers.database import DatabaseServicer
from lucid.storage.servicers.schema import SchemaServicer
from lucid.storage.servicers.search import SearchServicer
from lucid.storage.servicers.volume import VolumeServicer
from lucid.storage.store.cache import CacheAdmin
from lucid.storage.store.collections import CollectionAdmin
from lucid.storage.store.declarations import DeclarationStore
from lucid.storage.store.probes import BlobVolume, StoreProbes
from lucid.storage.store.schedules import ScheduleStore
from lucid.storage.store.search import SearchEngine
from lucid.storage.store.volumes import VolumeStore
from lucid.storage.v1 import (
    backup_pb2_grpc,
    cache_pb2_grpc,
    database_pb2_grpc,
    schema_pb2_grpc,
    search_pb2_grpc,
    volume_pb2_grpc,
)
from lucid.storage.validation import SchemaValidator
from lucid.storage.volumes import MAX_QUOTA, Volumes


@dataclass(frozen=True)
class StorageOptions:
    """Knobs of the storage server (tests change them)."""

    blob_quota_bytes: int | None = None
    """The blob volume's logical quota; ``None`` keeps the recorded one
    (first start: the file system's size, at most 500 GiB)."""
    scheduler_interval_s: float = 30.0
    """How often due backup schedules and expired backups are looked for."""
    sampler_interval_s: float = 300.0
    """How often volume usage is sampled."""


def blob_volume(runtime: Runtime, quota_bytes: int | None = None) -> BlobVolume:
    """The blob volume of the settings, with a quota until the recorded one is read."""
    path = runtime.settings.blob_dir
    path.mkdir(parents=True, exist_ok=True)
    return BlobVolume(path, quota_bytes or min(MAX_QUOTA, shutil.disk_usage(path).total))


async def build(runtime: Runtime, options: StorageOptions | None = None) -> ClusterApp:
    """The storage server."""
    options = options or StorageOptions()
    settings = runtime.settings
    stores = runtime.datastores
    assert stores.mongo_client is not None
    db = stores.db
    clock = runtime.clock
    blob = blob_volume(runtime, options.blob_quota_bytes)
    audit = AuditTrail(db[AUDIT], clock)
    limiter = CallerLimits(RateLimiter(stores.cache, runtime.clock, "storage"))
    declarations = DeclarationStore(db[DECLARATIONS], clock)
    probes = StoreProbes(
        stores.mongo_client, settings.mongodb_db, stores.cache, blob, settings.dependency_timeout_s
    )
    backups = Backups(
        stores.mongo_client,
        settings.mongodb_db,
        settings.var_dir / "backups",
        lambda: Sealer(settings.sealing_passphrase()),
        clock,
    )
    schedules = Schedules(ScheduleStore(db[SCHEDULES]), backups, clock)
    volumes = Volumes(VolumeStore(db), settings.var_dir / "volumes", blob, clock)
    search = SearchIndices(SearchEngine(settings.var_dir / "search" / "search.db"), db, clock)

    async def ready() -> None:
        await volumes.register_blob_volume(options.blob_quota_bytes)
        await backups.recover()

    async def scheduler() -> None:
        await schedules.run(options.scheduler_interval_s)

    async def sampler() -> None:
        await volumes.run_sampler(options.sampler_interval_s)

    async def search_retention() -> None:
        await search.run(options.scheduler_interval_s)

    async def close_search() -> None:
        await search.close()
        search.engine.close()

    return ClusterApp(
        servicers=[
            (
                schema_pb2_grpc.add_SchemaServiceServicer_to_server,
                SchemaServicer(
                    declarations,
                    SchemaValidator(
                        db, stores.cache, blob, settings.dependency_timeout_s * 5, search.engine
                    ),
                    audit,
                    clock,
                ),
            ),
            (
                database_pb2_grpc.add_DatabaseServiceServicer_to_server,
                DatabaseServicer(
                    probes=probes,
                    admin=CollectionAdmin(db),
                    declarations=declarations,
                    limiter=limiter,
                    audit=audit,
                    clock=clock,
                    search=search,
                ),
            ),
            (
                backup_pb2_grpc.add_BackupServiceServicer_to_server,
                BackupServicer(backups, schedules, limiter, audit),
            ),
            (
                cache_pb2_grpc.add_CacheServiceServicer_to_server,
                CacheServicer(CacheAdmin(stores.cache), limiter, audit),
            ),
            (
                volume_pb2_grpc.add_VolumeServiceServicer_to_server,
                VolumeServicer(volumes, limiter, audit),
            ),
            (
                search_pb2_grpc.add_SearchServiceServicer_to_server,
                SearchServicer(search, limiter, audit),
            ),
        ],
        collections=COLLECTIONS,
        on_ready=[ready],
        tasks=[scheduler, sampler, search_retention],
        on_stop=[backups.close, volumes.close, close_search],
    )
