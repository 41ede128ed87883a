"""Storage's DatabaseService against real FerretDB and Redis: health (with stores
stopped), stats, collections, indexes, sharding on a single node, access rules."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from lucid.common.v1 import access_pb2
from lucid.runtime.config import Settings
from lucid.storage.app import StorageOptions, build
from lucid.storage.v1 import database_pb2
from lucid.supervisor.localservers import LocalStores, free_port
from tests.storage_support import Stubs, admin_metadata, private_stores
from tests.support import Mesh, details

HEALTHY = database_pb2.HEALTH_STATUS_HEALTHY
DEGRADED = database_pb2.HEALTH_STATUS_DEGRADED
UNHEALTHY = database_pb2.HEALTH_STATUS_UNHEALTHY


@pytest.fixture(scope="module")
async def storage(mesh: Mesh) -> Mesh:
    await mesh.start("storage")
    return mesh


async def _health(mesh: Mesh, **kwargs: object) -> database_pb2.GetDatabaseHealthResponse:
    async with mesh.channel("storage", identity="admin") as channel:
        return await Stubs(channel).database.GetDatabaseHealth(
            database_pb2.GetDatabaseHealthRequest(), timeout=10
        )


async def test_health_of_every_store(storage: Mesh) -> None:
    reply = await _health(storage)
    assert reply.status == HEALTHY
    stores = {s.name: s for s in reply.stores}
    assert set(stores) == {"mongodb", "redis", "blob"}
    assert "FerretDB" in stores["mongodb"].version
    assert stores["redis"].version
    assert all(s.status == HEALTHY for s in stores.values())


async def test_stats_of_mongodb_and_redis(storage: Mesh) -> None:
    metadata = await admin_metadata(storage, access_pb2.ROLE_ADMIN)
    async with storage.channel("storage") as channel:
        reply = await Stubs(channel).database.GetDatabaseStats(
            database_pb2.GetDatabaseStatsRequest(), metadata=metadata
        )
    assert reply.mongodb.database == storage.settings.mongodb_db
    assert reply.mongodb.collections >= 8  # storage's own at least
    assert reply.redis.used_memory_bytes > 0
    assert 0.0 <= reply.redis.hit_rate <= 1.0


async def test_access_rules(storage: Mesh) -> None:
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).database
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetDatabaseHealth(database_pb2.GetDatabaseHealthRequest())
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        user = await admin_metadata(storage, access_pb2.ROLE_USER)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetDatabaseHealth(database_pb2.GetDatabaseHealthRequest(), metadata=user)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        admin = await admin_metadata(storage, access_pb2.ROLE_ADMIN)
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # destructive: super_admin only
            await stub.DropCollection(
                database_pb2.DropCollectionRequest(collection_name="x", confirm=True),
                metadata=admin,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_collections_lifecycle(storage: Mesh) -> None:
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).database
        created = await stub.CreateCollection(
            database_pb2.CreateCollectionRequest(name="admin_made"), metadata=metadata
        )
        assert created.collection.name == "admin_made"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateCollection(
                database_pb2.CreateCollectionRequest(name="admin_made"), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # no confirm
            await stub.DropCollection(
                database_pb2.DropCollectionRequest(collection_name="admin_made"),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(caught.value).field_violations[0].field == "confirm"
        got = await stub.GetCollection(
            database_pb2.GetCollectionRequest(collection_name="admin_made"), metadata=metadata
        )
        assert got.collection.name == "admin_made"  # still there
        listed = await stub.ListCollections(
            database_pb2.ListCollectionsRequest(page_size=1000), metadata=metadata
        )
        names = {c.name: c for c in listed.collections}
        assert "admin_made" in names
        assert names["storage_backups"].cluster == access_pb2.CLUSTER_STORAGE
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetCollection(
                database_pb2.GetCollectionRequest(collection_name="nothing_here"),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        await stub.DropCollection(
            database_pb2.DropCollectionRequest(collection_name="admin_made", confirm=True),
            metadata=metadata,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DropCollection(
                database_pb2.DropCollectionRequest(collection_name="admin_made", confirm=True),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    audit = storage.servers["storage"].runtime.datastores.db["storage_audit_events"]
    events = await audit.find({"resource": "admin_made"}).to_list()
    assert {(e["action"], e["result"]) for e in events} >= {
        ("CreateCollection", "success"),
        ("CreateCollection", "failure"),
        ("DropCollection", "success"),
        ("DropCollection", "failure"),
    }
    assert all(e["principal"].startswith("user:") for e in events)


async def test_indexes(storage: Mesh) -> None:
    metadata = await admin_metadata(storage)
    key = database_pb2.IndexKey
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).database
        await stub.CreateCollection(
            database_pb2.CreateCollectionRequest(name="indexed"), metadata=metadata
        )
        request = database_pb2.CreateIndexRequest(
            collection_name="indexed",
            keys=[
                key(field="owner", kind=database_pb2.INDEX_KIND_ASCENDING),
                key(field="at", kind=database_pb2.INDEX_KIND_DESCENDING),
            ],
            unique=True,
        )
        made = await stub.CreateIndex(request, metadata=metadata)
        assert made.index.name == "owner_1_at_-1" and made.index.unique
        again = await stub.CreateIndex(request, metadata=metadata)  # idempotent
        assert again.index.name == made.index.name
        other = database_pb2.CreateIndexRequest()
        other.CopyFrom(request)
        other.unique = False
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateIndex(other, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        listed = await stub.ListIndexes(
            database_pb2.ListIndexesRequest(collection_name="indexed"), metadata=metadata
        )
        assert [i.name for i in listed.indexes] == ["_id_", "owner_1_at_-1"]
        assert [(k.field, k.kind) for k in listed.indexes[1].keys] == [
            ("owner", database_pb2.INDEX_KIND_ASCENDING),
            ("at", database_pb2.INDEX_KIND_DESCENDING),
        ]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DropIndex(
                database_pb2.DropIndexRequest(
                    collection_name="indexed", index_name="nope", confirm=True
                ),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DropIndex(
                database_pb2.DropIndexRequest(collection_name="indexed", index_name="_id_"),
                metadata=metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await stub.DropIndex(
            database_pb2.DropIndexRequest(
                collection_name="indexed", index_name="owner_1_at_-1", confirm=True
            ),
            metadata=metadata,
        )
        listed = await stub.ListIndexes(
            database_pb2.ListIndexesRequest(collection_name="indexed"), metadata=metadata
        )
        assert [i.name for i in listed.indexes] == ["_id_"]


async def test_sharding_on_a_single_node(storage: Mesh) -> None:
    metadata = await admin_metadata(storage)
    async with storage.channel("storage") as channel:
        stub = Stubs(channel).database
        status = await stub.GetShardingStatus(
            database_pb2.GetShardingStatusRequest(), metadata=metadata
        )
        assert not status.enabled and status.mode == "single-node"
        for call in (
            stub.EnableSharding(database_pb2.EnableShardingRequest(), metadata=metadata),
            stub.StartBalancer(database_pb2.StartBalancerRequest(), metadata=metadata),
            stub.StopBalancer(database_pb2.StopBalancerRequest(), metadata=metadata),
            stub.ShardCollection(
                database_pb2.ShardCollectionRequest(
                    collection_name="storage_backups",
                    shard_key=[
                        database_pb2.ShardKeyField(
                            field="backup_id", kind=database_pb2.SHARD_KEY_KIND_HASHED
                        )
                    ],
                ),
                metadata=metadata,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert details(caught.value).reason == "LUCID_ERR_4003"


@pytest.fixture
async def private(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[Mesh, LocalStores]]:
    """A storage server on its own FerretDB, Redis and blob volume, which the test may stop."""
    async with private_stores(settings, tmp_path) as (mesh, stores):
        await mesh.start("storage")
        try:
            yield mesh, stores
        finally:
            await mesh.stop_all()


async def test_health_degrades_and_fails_with_the_stores(
    private: tuple[Mesh, LocalStores],
) -> None:
    mesh, stores = private
    assert (await _health(mesh)).status == HEALTHY
    await asyncio.to_thread(stores.redis.stop)
    reply = await _health(mesh)
    by_name = {s.name: s for s in reply.stores}
    assert reply.status == DEGRADED
    assert by_name["redis"].status == UNHEALTHY and by_name["redis"].message
    assert by_name["mongodb"].status == HEALTHY
    await asyncio.to_thread(stores.mongo.stop)
    shutil.rmtree(mesh.settings.blob_dir)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _health(mesh)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert details(caught.value).reason == "LUCID_ERR_5002"


async def test_blob_volume_thresholds(settings: Settings, tmp_path: Path) -> None:
    """A tiny logical quota crosses 80 % (degraded) and 90 % (unhealthy)."""
    own = settings.replace(
        var_dir=tmp_path / "var", ports={**settings.ports, "storage": free_port()}
    )
    shutil.copytree(settings.certs_dir, own.certs_dir)
    mesh = Mesh(own)

    async def builder(runtime: object) -> object:
        return await build(runtime, StorageOptions(blob_quota_bytes=1000))  # type: ignore[arg-type]

    await mesh.start("storage", builder)  # type: ignore[arg-type]
    try:
        blob = own.blob_dir
        (blob / "a").write_bytes(b"x" * 850)
        reply = await _health(mesh)
        by_name = {s.name: s for s in reply.stores}
        assert by_name["blob"].status == DEGRADED and "warning" in by_name["blob"].message
        assert reply.status == DEGRADED
        (blob / "b").write_bytes(b"x" * 100)
        reply = await _health(mesh)
        by_name = {s.name: s for s in reply.stores}
        assert by_name["blob"].status == UNHEALTHY and "critical" in by_name["blob"].message
    finally:
        await mesh.stop_all()
