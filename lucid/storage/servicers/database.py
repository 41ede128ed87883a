"""gRPC adapter of ``lucid.storage.v1.DatabaseService``: health, stats, collections,
indexes and sharding (a single node: sharding is reported off and cannot change)."""

from __future__ import annotations

import time

import grpc

from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock
from lucid.runtime import paging
from lucid.runtime.audit import AuditTrail, audited
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.wire import duration
from lucid.storage.indices import SearchIndices
from lucid.storage.ratelimit import CallerLimits
from lucid.storage.store.collections import CollectionAdmin
from lucid.storage.store.declarations import DeclarationStore
from lucid.storage.store.probes import UNHEALTHY, StoreProbes, overall
from lucid.storage.storeerrors import maps_store_errors
from lucid.storage.v1 import database_pb2, database_pb2_grpc, schema_pb2

SINGLE_NODE = "single-node"


def _single_node() -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_NOT_ALLOWED,
        "sharding needs a sharded cluster; this database is a single node",
        metadata={"mode": SINGLE_NODE},
    )


@maps_store_errors
class DatabaseServicer(database_pb2_grpc.DatabaseServiceServicer):
    """Database administration."""

    def __init__(
        self,
        *,
        probes: StoreProbes,
        admin: CollectionAdmin,
        declarations: DeclarationStore,
        limiter: CallerLimits,
        audit: AuditTrail,
        clock: Clock,
        search: SearchIndices,
    ) -> None:
        self.search = search
        self.probes = probes
        self.admin = admin
        self.declarations = declarations
        self.limiter = limiter
        self.audit = audit
        self.clock = clock
        self.started = time.monotonic()

    async def _owners(self) -> dict[str, access_pb2.Cluster.ValueType]:
        return await self.declarations.owners()

    async def GetDatabaseHealth(
        self, request: database_pb2.GetDatabaseHealthRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.GetDatabaseHealthResponse:
        reports = await self.probes.all()
        status = overall(reports)
        if status == UNHEALTHY:
            raise LucidError(
                ErrorCode.ERROR_CODE_DEPENDENCY_UNAVAILABLE,
                "no store answers: " + "; ".join(f"{r.name}: {r.message}" for r in reports),
            )
        response = database_pb2.GetDatabaseHealthResponse(
            status=status,
            uptime=duration(time.monotonic() - self.started),
        )
        response.check_time.FromDatetime(self.clock.now())
        for report in reports:
            response.stores.append(
                database_pb2.StoreHealth(
                    name=report.name,
                    status=report.status,
                    version=report.version,
                    response_latency=duration(report.latency_s),
                    message=report.message,
                )
            )
        return response

    async def GetDatabaseStats(
        self, request: database_pb2.GetDatabaseStatsRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.GetDatabaseStatsResponse:
        await self.limiter.check("database")
        mongo = await self.probes.mongo_stats()
        try:
            redis_stats = await self.probes.redis_stats()
        except Exception as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_CACHE_UNAVAILABLE, f"Redis does not answer: {exc}"
            ) from exc
        return database_pb2.GetDatabaseStatsResponse(
            mongodb=mongo, redis=redis_stats, search=await self.search.engine_stats()
        )

    async def ListCollections(
        self, request: database_pb2.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.ListCollectionsResponse:
        await self.limiter.check("database")
        page = paging.page(request)
        owners = await self._owners()
        names = [
            n
            for n in await self.admin.names()
            if not request.cluster or owners.get(n) == request.cluster
        ]
        chosen = page.window(names)
        return database_pb2.ListCollectionsResponse(
            collections=[
                await self.admin.describe(n, owners.get(n, access_pb2.CLUSTER_UNSPECIFIED))
                for n in chosen
            ],
            next_page_token=page.next_token(len(chosen), len(names)),
            total_size=len(names),
        )

    async def GetCollection(
        self, request: database_pb2.GetCollectionRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.GetCollectionResponse:
        await self.limiter.check("database")
        owners = await self._owners()
        name = request.collection_name
        collection = await self.admin.describe(
            name, owners.get(name, access_pb2.CLUSTER_UNSPECIFIED), with_validator=True
        )
        return database_pb2.GetCollectionResponse(collection=collection)

    @audited(lambda r: r.name)
    async def CreateCollection(
        self, request: database_pb2.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.CreateCollectionResponse:
        await self.limiter.check("database")
        await self.admin.create(
            request.name,
            capped=request.capped,
            max_size_bytes=request.max_size_bytes,
            max_documents=request.max_documents,
            validator=request.validator if request.HasField("validator") else None,
        )
        owners = await self._owners()
        collection = await self.admin.describe(
            request.name, owners.get(request.name, access_pb2.CLUSTER_UNSPECIFIED)
        )
        return database_pb2.CreateCollectionResponse(collection=collection)

    @audited(lambda r: r.collection_name)
    async def DropCollection(
        self, request: database_pb2.DropCollectionRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.DropCollectionResponse:
        await self.limiter.check("database")
        dropped = await self.admin.drop(request.collection_name)
        return database_pb2.DropCollectionResponse(documents_dropped=dropped)

    async def ListIndexes(
        self, request: database_pb2.ListIndexesRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.ListIndexesResponse:
        await self.limiter.check("database")
        page = paging.page(request)
        indexes = await self.admin.indexes(request.collection_name)
        chosen = page.window(indexes)
        return database_pb2.ListIndexesResponse(
            indexes=chosen,
            next_page_token=page.next_token(len(chosen), len(indexes)),
            total_size=len(indexes),
        )

    @audited(lambda r: f"{r.collection_name}.{r.name}")
    async def CreateIndex(
        self, request: database_pb2.CreateIndexRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.CreateIndexResponse:
        await self.limiter.check("database")
        spec = schema_pb2.IndexSpec(
            name=request.name, keys=request.keys, unique=request.unique, sparse=request.sparse
        )
        if request.HasField("expire_after_seconds"):
            spec.expire_after_seconds = request.expire_after_seconds
        index = await self.admin.create_index(request.collection_name, spec)
        return database_pb2.CreateIndexResponse(index=index)

    @audited(lambda r: f"{r.collection_name}.{r.index_name}")
    async def DropIndex(
        self, request: database_pb2.DropIndexRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.DropIndexResponse:
        await self.limiter.check("database")
        await self.admin.drop_index(request.collection_name, request.index_name)
        return database_pb2.DropIndexResponse()

    async def GetShardingStatus(
        self, request: database_pb2.GetShardingStatusRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.GetShardingStatusResponse:
        await self.limiter.check("sharding")
        return database_pb2.GetShardingStatusResponse(enabled=False, mode=SINGLE_NODE)

    @audited(lambda r: "database")
    async def EnableSharding(
        self, request: database_pb2.EnableShardingRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.EnableShardingResponse:
        await self.limiter.check("sharding")
        raise _single_node()

    @audited(lambda r: r.collection_name)
    async def ShardCollection(
        self, request: database_pb2.ShardCollectionRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.ShardCollectionResponse:
        await self.limiter.check("sharding")
        if not await self.admin.exists(request.collection_name):
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_FOUND, f"collection {request.collection_name} not found"
            )
        raise _single_node()

    @audited(lambda r: "balancer")
    async def StartBalancer(
        self, request: database_pb2.StartBalancerRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.StartBalancerResponse:
        await self.limiter.check("sharding")
        raise _single_node()

    @audited(lambda r: "balancer")
    async def StopBalancer(
        self, request: database_pb2.StopBalancerRequest, context: grpc.aio.ServicerContext
    ) -> database_pb2.StopBalancerResponse:
        await self.limiter.check("sharding")
        raise _single_node()
