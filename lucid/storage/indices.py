"""Search indices as the search rpcs see them: their description and stats, their
reindexing from a MongoDB collection (in the background) and their retention."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.wire import duration, optional_timestamp
from lucid.storage import convert
from lucid.storage.background import BackgroundTasks
from lucid.storage.store.search import SearchEngine, plain
from lucid.storage.v1 import database_pb2, search_pb2

log = logging.getLogger("lucid.storage.search")


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
            health=convert.index_health(settings),
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
            index.last_reindex.CopyFrom(convert.reindex_message(settings["last_reindex"]))
        return index

    async def engine_stats(self) -> database_pb2.SearchEngineStats:
        """The engine as a whole: red if any index is red, yellow if any is yellow."""
        names = await self.call(self.engine.names)
        documents = 0
        worst = search_pb2.INDEX_HEALTH_GREEN
        for name in names:
            documents += (await self.call(self.engine.counts, name))[0]
            worst = max(worst, convert.index_health(await self.call(self.engine.settings, name)))
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
