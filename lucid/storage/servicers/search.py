"""gRPC adapter of ``lucid.storage.v1.SearchService`` over the SQLite search engine
(the indices and their reindexing are ``lucid.storage.indices``)."""

from __future__ import annotations

import logging
import time

import grpc
from google.protobuf import json_format

from lucid.runtime import paging
from lucid.runtime.audit import AuditTrail, audited
from lucid.runtime.wire import duration
from lucid.storage import convert
from lucid.storage.indices import SearchIndices
from lucid.storage.ratelimit import CallerLimits
from lucid.storage.store.search import index_settings
from lucid.storage.storeerrors import maps_store_errors
from lucid.storage.v1 import search_pb2, search_pb2_grpc

log = logging.getLogger("lucid.storage.search")

DEFAULT_BATCH = 1000
DEFAULT_SIZE = 10


@maps_store_errors
class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    """Search indices and queries."""

    def __init__(self, indices: SearchIndices, limiter: CallerLimits, audit: AuditTrail) -> None:
        self.indices = indices
        self.engine = indices.engine
        self.limiter = limiter
        self.audit = audit

    async def ListSearchIndices(
        self, request: search_pb2.ListSearchIndicesRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.ListSearchIndicesResponse:
        await self.limiter.check("database")
        page = paging.page(request)
        names = await self.indices.call(self.engine.names)
        chosen = page.window(names)
        return search_pb2.ListSearchIndicesResponse(
            indices=[await self.indices.message(n) for n in chosen],
            next_page_token=page.next_token(len(chosen), len(names)),
            total_size=len(names),
        )

    @audited(lambda r: r.name)
    async def CreateSearchIndex(
        self, request: search_pb2.CreateSearchIndexRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.CreateSearchIndexResponse:
        await self.limiter.check("database")
        settings = index_settings(
            request,
            shards=request.shards or 1,
            replicas=request.replicas if request.HasField("replicas") else 1,
            source_collection=request.source_collection,
        )
        await self.indices.call(self.engine.create, request.name, settings)
        return search_pb2.CreateSearchIndexResponse(index=await self.indices.message(request.name))

    async def GetSearchIndex(
        self, request: search_pb2.GetSearchIndexRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.GetSearchIndexResponse:
        await self.limiter.check("database")
        return search_pb2.GetSearchIndexResponse(
            index=await self.indices.message(request.index_name)
        )

    @audited(lambda r: r.index_name)
    async def DeleteSearchIndex(
        self, request: search_pb2.DeleteSearchIndexRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.DeleteSearchIndexResponse:
        await self.limiter.check("database")
        await self.indices.call(self.engine.delete, request.index_name)
        return search_pb2.DeleteSearchIndexResponse()

    @audited(lambda r: r.index_name)
    async def ReindexSearchIndex(
        self, request: search_pb2.ReindexSearchIndexRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.ReindexSearchIndexResponse:
        await self.limiter.check("database")
        status = await self.indices.reindex(request.index_name, request.batch_size or DEFAULT_BATCH)
        return search_pb2.ReindexSearchIndexResponse(reindex=convert.reindex_message(status))

    async def GetSearchIndexStats(
        self, request: search_pb2.GetSearchIndexStatsRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.GetSearchIndexStatsResponse:
        await self.limiter.check("database")
        settings = await self.indices.call(self.engine.settings, request.index_name)
        count, size = await self.indices.call(self.engine.counts, request.index_name)
        stats = self.engine.stats.get(request.index_name)
        queries = stats.queries if stats else 0
        average = stats.total_s / stats.queries if stats and stats.queries else 0.0
        return search_pb2.GetSearchIndexStatsResponse(
            index_name=request.index_name,
            document_count=count,
            size_bytes=size,
            query_count=queries,
            average_query_latency=duration(average),
            indexing_count=(settings.get("last_reindex") or {}).get("documents_done", 0),
            health=convert.index_health(settings),
        )

    async def Search(
        self, request: search_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.SearchResponse:
        await self.limiter.check("database")
        started = time.perf_counter()
        indices = list(request.indices) or await self.indices.call(self.engine.names)
        query = json_format.MessageToDict(request.query)
        sort = [(s.field, s.order == search_pb2.SORT_ORDER_DESC) for s in request.sort]
        total, rows = await self.indices.call(
            self.engine.search,
            indices,
            query,
            offset=request.offset,
            size=request.size or DEFAULT_SIZE,
            sort=sort,
        )
        response = search_pb2.SearchResponse(
            took=duration(time.perf_counter() - started), total_hits=total
        )
        for index, doc_id, found in rows:
            shown = {f: found[f] for f in request.fields if f in found} if request.fields else found
            hit = search_pb2.SearchHit(index=index, id=doc_id, score=1.0)
            hit.source.update(shown)
            response.hits.append(hit)
        return response
