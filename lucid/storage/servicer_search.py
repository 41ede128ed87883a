"""gRPC adapter of ``lucid.storage.v1.SearchService`` over the SQLite search engine,
and the reindexing of an index from its source collection (in the background)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

import grpc
from google.protobuf import json_format
from pymongo.asynchronous.database import AsyncDatabase

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime import paging
from lucid.runtime.audit import AuditTrail, audited
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.wire import duration, optional_timestamp
from lucid.storage.background import BackgroundTasks
from lucid.storage.ratelimit import CallerLimits
from lucid.storage.search import SearchEngine, index_settings, plain
from lucid.storage.storeerrors import maps_store_errors
from lucid.storage.v1 import database_pb2, search_pb2, search_pb2_grpc

log = logging.getLogger("lucid.storage.search")

DEFAULT_BATCH = 1000
DEFAULT_SIZE = 10
REINDEX_STATES = {
    "started": search_pb2.REINDEX_STATE_STARTED,
    "in_progress": search_pb2.REINDEX_STATE_IN_PROGRESS,
    "completed": search_pb2.REINDEX_STATE_COMPLETED,
    "failed": search_pb2.REINDEX_STATE_FAILED,
}


def _health(settings: dict[str, Any]) -> search_pb2.IndexHealth.ValueType:
    """One node holds no replica: an index asking for replicas is yellow."""
    return search_pb2.INDEX_HEALTH_YELLOW if settings["replicas"] else search_pb2.INDEX_HEALTH_GREEN


class SearchIndices(BackgroundTasks):
    """Indices, their reindexing from MongoDB and their retention."""

    def __init__(self, engine: SearchEngine, db: AsyncDatabase[dict[str, Any]], clock: Clock):
        super().__init__()
        self.engine = engine
        self.db = db
        self.clock = clock

    async def call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs a blocking engine method in a thread."""
        return await asyncio.to_thread(method, *args, **kwargs)

    async def message(self, name: str) -> search_pb2.SearchIndex:
        """An index as the contract shows it."""
        settings = await self.call(self.engine.settings, name)
        count, size = await self.call(self.engine.counts, name)
        index = search_pb2.SearchIndex(
            name=name,
            shards=settings["shards"],
            replicas=settings["replicas"],
            health=_health(settings),
            document_count=count,
            size_bytes=size,
            source_collection=settings["source_collection"],
            create_time=optional_timestamp(datetime.fromisoformat(settings["create_time"])),
            refresh_interval=duration(settings["refresh_s"]),
        )
        index.mappings.update(settings["mappings"])
        if settings.get("retention_s"):
            index.retention.CopyFrom(duration(settings["retention_s"]))
        if settings.get("last_reindex"):
            index.last_reindex.CopyFrom(reindex_message(settings["last_reindex"]))
        return index

    async def engine_stats(self) -> database_pb2.SearchEngineStats:
        """The engine as a whole: red if any index is red, yellow if any is yellow."""
        names = await self.call(self.engine.names)
        documents = 0
        worst = search_pb2.INDEX_HEALTH_GREEN
        for name in names:
            documents += (await self.call(self.engine.counts, name))[0]
            worst = max(worst, _health(await self.call(self.engine.settings, name)))
        return database_pb2.SearchEngineStats(
            cluster_status=search_pb2.IndexHealth.Name(worst).removeprefix("INDEX_HEALTH_").lower(),
            indices=len(names),
            documents=documents,
        )

    async def reindex(self, name: str, batch_size: int) -> dict[str, Any]:
        """Starts rebuilding an index from its source collection."""
        settings = await self.call(self.engine.settings, name)
        source = settings["source_collection"]
        if not source:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE, f"search index {name} has no source collection"
            )
        running = settings.get("last_reindex") or {}
        if running.get("state") in ("started", "in_progress"):
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "a reindex is already running")
        status = {
            "operation_id": new_id(),
            "state": "started",
            "documents_done": 0,
            "documents_total": await self.db[source].estimated_document_count(),
            "start_time": self.clock.now().isoformat(),
            "error_message": "",
        }
        await self._record(name, status)
        self.spawn(self._rebuild(name, source, batch_size, status))
        return status

    async def _record(self, name: str, status: dict[str, Any]) -> None:
        settings = await self.call(self.engine.settings, name)
        settings["last_reindex"] = dict(status)
        await self.call(self.engine.update_settings, name, settings)

    async def _rebuild(
        self, name: str, source: str, batch_size: int, status: dict[str, Any]
    ) -> None:
        status["state"] = "in_progress"
        await self._record(name, status)
        try:
            await self.call(self.engine.clear, name)
            batch: list[tuple[str, dict[str, Any]]] = []
            async for document in self.db[source].find({}, sort=[("_id", 1)]):
                batch.append((str(plain(document["_id"])), plain(document)))
                if len(batch) >= batch_size:
                    await self.call(self.engine.put, name, batch)
                    status["documents_done"] += len(batch)
                    batch = []
                    await self._record(name, status)
            if batch:
                await self.call(self.engine.put, name, batch)
                status["documents_done"] += len(batch)
            status["state"] = "completed"
        except Exception as exc:
            log.exception("reindex failed", extra={"index": name})
            status.update(state="failed", error_message=str(exc)[:500])
        status["complete_time"] = self.clock.now().isoformat()
        await self._record(name, status)

    async def sweep(self) -> int:
        """Removes documents past their index's retention."""
        removed = 0
        for name in await self.call(self.engine.names):
            retention = (await self.call(self.engine.settings, name)).get("retention_s")
            if retention:
                removed += await self.call(self.engine.expire, name, time.time() - retention)
        return int(removed)

    async def run(self, interval_s: float) -> None:
        """The retention task."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.debug("search retention sweep failed", exc_info=True)
            await asyncio.sleep(interval_s)


def reindex_message(status: dict[str, Any]) -> search_pb2.ReindexStatus:
    """A reindex status as the contract shows it."""
    message = search_pb2.ReindexStatus(
        operation_id=status["operation_id"],
        state=REINDEX_STATES[status["state"]],
        documents_done=status["documents_done"],
        documents_total=status["documents_total"],
        start_time=optional_timestamp(datetime.fromisoformat(status["start_time"])),
        error_message=status["error_message"],
    )
    if status.get("complete_time"):
        message.complete_time.CopyFrom(
            optional_timestamp(datetime.fromisoformat(status["complete_time"]))  # type: ignore[arg-type]
        )
    return message


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
        return search_pb2.ReindexSearchIndexResponse(reindex=reindex_message(status))

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
            health=_health(settings),
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
