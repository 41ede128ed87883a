"""Schema declarations reach storage from every server; ValidateSchema and InitSchema
compare them with FerretDB, Redis and the blob volume; ``lucid db validate``."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from lucid.cli import code_declarations
from lucid.common.v1 import access_pb2
from lucid.runtime.config import Settings
from lucid.runtime.schema import CollectionSpec, IndexSpec
from lucid.runtime.server import ClusterApp, ClusterServer, Runtime
from lucid.storage import dbcli
from lucid.storage.store.probes import BlobVolume
from lucid.storage.v1 import schema_pb2, search_pb2
from lucid.storage.validation import SchemaValidator, keys_enabled
from lucid.supervisor.localservers import free_port, tool_path
from tests.storage_support import Stubs, admin_metadata, eventually, private_stores
from tests.support import Mesh, details

NODES = access_pb2.CLUSTER_NODES
THINGS = CollectionSpec(
    "nodes_things",
    (
        IndexSpec((("thing_id", 1),), "thing_id_unique", unique=True),
        IndexSpec((("owner", 1), ("at", -1)), "owner_at"),
        IndexSpec((("expires_at", 1),), "expires_ttl", ttl_seconds=0),
    ),
)


async def _nodes_app(runtime: Runtime) -> ClusterApp:
    return ClusterApp(servicers=[], collections=(THINGS,), blob_paths=("nodes/",))


@pytest.fixture
async def declared(
    settings: Settings, tmp_path: Path, mesh: Mesh
) -> AsyncIterator[tuple[Mesh, Settings]]:
    """Storage on private stores and blob volume, and a 'nodes' server declaring a
    collection, a TTL index and a blob path."""
    async with private_stores(settings, tmp_path, clusters=("storage", "nodes")) as (
        private,
        _,
    ):
        private.servers["auth"] = mesh.servers["auth"]  # tokens from the session's auth
        storage = await private.start("storage")
        nodes = await private.start("nodes", _nodes_app)
        try:
            for server in (storage, nodes):
                await _declared(server)
            yield private, private.settings
        finally:
            private.servers.pop("auth")
            await private.stop_all()


async def _declared(server: ClusterServer) -> None:
    async def state() -> bool:
        return server.declarer is not None and server.declarer.declared.is_set()

    await eventually(state, bool, timeout_s=60)


async def _validate(mesh: Mesh, **kwargs: object) -> schema_pb2.ValidateSchemaResponse:
    async with mesh.channel("storage", identity="admin") as channel:
        return await Stubs(channel).schema.ValidateSchema(
            schema_pb2.ValidateSchemaRequest(**kwargs),
            timeout=30,  # type: ignore[arg-type]
        )


async def test_servers_declare_and_a_fresh_mesh_validates(
    declared: tuple[Mesh, Settings],
) -> None:
    mesh, _ = declared
    async with mesh.channel("storage", identity="admin") as channel:
        listed = await Stubs(channel).schema.ListSchemaDeclarations(
            schema_pb2.ListSchemaDeclarationsRequest()
        )
    by_cluster = {d.cluster: d for d in listed.declarations}
    assert set(by_cluster) == {access_pb2.CLUSTER_STORAGE, NODES}
    nodes = by_cluster[NODES]
    assert [c.name for c in nodes.collections] == ["nodes_things"]
    assert [p.prefix for p in nodes.redis_prefixes] == ["lucid:nodes:"]
    assert [p.path for p in nodes.blob_paths] == ["nodes/"]
    assert nodes.version and nodes.declare_time.seconds
    report = await _validate(mesh)
    nodes_report = next(r for r in report.reports if r.cluster == NODES)
    # FerretDB has no TTL indexes: reported as emulated, which is not a problem
    assert [(f.kind, f.object) for f in nodes_report.findings] == [
        (schema_pb2.FINDING_KIND_EMULATED, "nodes_things.expires_ttl"),
        (schema_pb2.FINDING_KIND_MISSING, "nodes/"),
    ]
    assert not nodes_report.valid  # the blob path is not there yet
    async with mesh.channel("storage") as channel:
        init = await Stubs(channel).schema.InitSchema(
            schema_pb2.InitSchemaRequest(clusters=[NODES]),
            metadata=await admin_metadata(mesh),
        )
    assert [(c.action, c.object) for c in init.changes] == [
        (schema_pb2.SCHEMA_ACTION_CREATE_PATH, "nodes/")
    ]
    db = mesh.servers["storage"].runtime.datastores.db
    before = {ix["name"]: ix async for ix in await db["nodes_things"].list_indexes()}
    async with mesh.channel("storage") as channel:
        again = await Stubs(channel).schema.InitSchema(
            schema_pb2.InitSchemaRequest(clusters=[NODES]),
            metadata=await admin_metadata(mesh),
        )
    assert not again.changes and not again.conflicts and again.unchanged_count == 5
    after = {ix["name"]: ix async for ix in await db["nodes_things"].list_indexes()}
    assert after == before  # the same collection set and index specs
    report = await _validate(mesh)
    assert report.valid, report
    assert not report.store_findings


async def test_validate_reports_every_kind_of_drift(declared: tuple[Mesh, Settings]) -> None:
    mesh, own = declared
    db = mesh.servers["storage"].runtime.datastores.db
    redis = mesh.servers["storage"].runtime.datastores.cache
    things = db["nodes_things"]
    await things.drop_index("owner_at")
    await things.create_index([("owner", 1)], name="owner_only")
    await things.drop_index("thing_id_unique")
    await things.create_index([("thing_id", 1)], name="thing_id_unique")  # not unique now
    await db.create_collection("stray_collection")
    await redis.set("rogue:key", "1")
    await redis.set("lucid:nodes:fine", "1")
    (own.blob_dir / "stray").mkdir()
    report = await _validate(mesh, clusters=[NODES])
    assert not report.valid
    (nodes,) = report.reports
    assert [(i.collection_name, i.index_name) for i in nodes.missing_indexes] == [
        ("nodes_things", "owner_at")
    ]
    assert [i.index_name for i in nodes.extra_indexes] == ["owner_only"]
    (mismatch,) = nodes.mismatched_indexes
    assert mismatch.index_name == "thing_id_unique" and list(mismatch.differences) == ["unique"]
    assert "stray_collection" in report.undeclared_collections
    assert list(report.undeclared_key_prefixes) == ["rogue:"]
    assert "stray" in report.undeclared_blob_paths
    async with mesh.channel("storage") as channel:
        init = await Stubs(channel).schema.InitSchema(
            schema_pb2.InitSchemaRequest(clusters=[NODES], dry_run=True),
            metadata=await admin_metadata(mesh),
        )
    assert init.dry_run
    assert [c.object for c in init.changes] == ["nodes_things.owner_at", "nodes/"]
    assert init.conflicts == ["nodes_things.thing_id_unique: unique differ"]
    assert "owner_at" not in {ix["name"] async for ix in await things.list_indexes()}
    await db.drop_collection("nodes_things")
    report = await _validate(mesh, clusters=[NODES])
    assert list(report.reports[0].missing_collections) == ["nodes_things"]


async def test_blob_and_redis_store_findings(settings: Settings, tmp_path: Path) -> None:
    """A missing blob volume and an unhardened Redis (KEYS enabled) are problems."""
    port = free_port()
    process = _plain_redis(port)
    redis = aioredis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        await eventually(_pinger(redis), bool, timeout_s=20)
        assert await keys_enabled(redis)
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(settings.mongodb_uri)
        db = client[f"{settings.mongodb_db}_blobcheck"]
        validator = SchemaValidator(db, redis, BlobVolume(tmp_path / "absent", 10**9))  # type: ignore[arg-type]
        from datetime import UTC, datetime

        report = await validator.validate([], now=datetime.now(UTC))
        kinds = {(f.store, f.object): f.kind for f in report.store_findings}
        assert kinds[(schema_pb2.STORE_KIND_REDIS, "KEYS")] == schema_pb2.FINDING_KIND_UNHEALTHY
        assert (
            kinds[(schema_pb2.STORE_KIND_BLOB_VOLUME, str(tmp_path / "absent"))]
            == schema_pb2.FINDING_KIND_UNHEALTHY
        )
        assert not report.valid
        await client.close()
    finally:
        await redis.aclose()
        process.terminate()
        await asyncio.to_thread(process.wait, 10)


def _plain_redis(port: int) -> subprocess.Popen[bytes]:
    """A redis-server with its defaults: KEYS enabled."""
    return subprocess.Popen(
        [tool_path("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _pinger(redis: aioredis.Redis) -> object:
    async def ping() -> bool:
        try:
            return bool(await redis.ping())
        except aioredis.ConnectionError:
            return False

    return ping


async def test_declare_refuses_another_clusters_schema(declared: tuple[Mesh, Settings]) -> None:
    mesh, _ = declared
    async with mesh.channel("storage", identity="nodes") as channel:
        stub = Stubs(channel).schema
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeclareSchema(
                schema_pb2.DeclareSchemaRequest(
                    declaration=schema_pb2.SchemaDeclaration(cluster=access_pb2.CLUSTER_AUTH)
                )
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeclareSchema(
                schema_pb2.DeclareSchemaRequest(
                    declaration=schema_pb2.SchemaDeclaration(
                        cluster=NODES,
                        redis_prefixes=[schema_pb2.RedisPrefixSpec(prefix="lucid:auth:")],
                    )
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        same = await stub.DeclareSchema(
            schema_pb2.DeclareSchemaRequest(
                declaration=mesh.servers["nodes"].declarer.declaration  # type: ignore[union-attr]
            )
        )
        assert not same.changed
    async with mesh.channel("storage", identity="operator") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # services only
            await Stubs(channel).schema.DeclareSchema(
                schema_pb2.DeclareSchemaRequest(
                    declaration=schema_pb2.SchemaDeclaration(cluster=NODES)
                ),
                metadata=await admin_metadata(mesh),
            )
        assert details(caught.value).reason == "LUCID_ERR_2013"


async def test_lucid_db_validate(declared: tuple[Mesh, Settings]) -> None:
    _, own = declared
    status, text = await dbcli.validate(own, code_declarations=[])
    assert "recorded by storage (2 clusters)" in text
    assert status == dbcli.PROBLEMS_FOUND and "missing: nodes/" in text
    (own.blob_dir / "nodes").mkdir()
    status, text = await dbcli.validate(own, code_declarations=[])
    assert status == dbcli.OK, text
    assert "KEYS disabled" in text and "emulated: nodes_things.expires_ttl" in text
    assert text.rstrip().endswith("VALID")
    status, text = await dbcli.validate(own, code_declarations=code_declarations(), from_code=True)
    assert "from the code (10 clusters)" in text
    assert status == dbcli.PROBLEMS_FOUND  # the code has no nodes_things: undeclared
    assert "undeclared collections: nodes_things" in text
    down = own.replace(mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/", dependency_timeout_s=0.3)
    status, text = await dbcli.validate(down, code_declarations=[])
    assert status == dbcli.UNREACHABLE and "does not answer" in text


async def test_declared_search_indices(declared: tuple[Mesh, Settings], mesh: Mesh) -> None:
    private, _ = declared
    declaration = schema_pb2.SchemaDeclaration()
    declaration.CopyFrom(private.servers["nodes"].declarer.declaration)  # type: ignore[union-attr]
    declaration.search_indices.add(name="lucid_nodes")
    metadata = await admin_metadata(mesh)
    async with private.channel("storage", identity="nodes") as channel:
        changed = await Stubs(channel).schema.DeclareSchema(
            schema_pb2.DeclareSchemaRequest(declaration=declaration)
        )
        assert changed.changed
    async with private.channel("storage") as channel:
        stubs = Stubs(channel)
        await stubs.search.CreateSearchIndex(
            search_pb2.CreateSearchIndexRequest(name="undeclared_one"), metadata=metadata
        )
        report = await stubs.schema.ValidateSchema(
            schema_pb2.ValidateSchemaRequest(clusters=[NODES]), metadata=metadata
        )
        (nodes,) = report.reports
        assert (schema_pb2.STORE_KIND_SEARCH, "lucid_nodes") in {
            (f.store, f.object) for f in nodes.findings if f.kind == schema_pb2.FINDING_KIND_MISSING
        }
        assert list(report.undeclared_search_indices) == ["undeclared_one"]
        init = await stubs.schema.InitSchema(
            schema_pb2.InitSchemaRequest(clusters=[NODES]), metadata=metadata
        )
        assert (schema_pb2.SCHEMA_ACTION_CREATE_SEARCH_INDEX, "lucid_nodes") in {
            (c.action, c.object) for c in init.changes
        }
        got = await stubs.search.GetSearchIndex(
            search_pb2.GetSearchIndexRequest(index_name="lucid_nodes"), metadata=metadata
        )
        assert got.index.health == search_pb2.INDEX_HEALTH_GREEN
