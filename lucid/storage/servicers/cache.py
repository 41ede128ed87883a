"""gRPC adapter of ``lucid.storage.v1.CacheService``."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2

from lucid.lib.ids import new_id
from lucid.runtime import paging
from lucid.runtime.audit import AuditTrail, audited
from lucid.storage.ratelimit import CallerLimits
from lucid.storage.store.cache import CacheAdmin, parse_value
from lucid.storage.store.probes import hit_rate
from lucid.storage.storeerrors import maps_store_errors
from lucid.storage.v1 import cache_pb2, cache_pb2_grpc

DEFAULT_KEYS_PAGE = 100


@maps_store_errors
class CacheServicer(cache_pb2_grpc.CacheServiceServicer):
    """Redis administration; listing uses SCAN, flushing deletes by prefix."""

    def __init__(self, admin: CacheAdmin, limiter: CallerLimits, audit: AuditTrail) -> None:
        self.admin = admin
        self.limiter = limiter
        self.audit = audit

    async def GetCacheStats(
        self, request: cache_pb2.GetCacheStatsRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.GetCacheStatsResponse:
        await self.limiter.check("database")
        info = await self.admin.info()
        counts = await self.admin.keys_by_prefix()
        uptime = duration_pb2.Duration(seconds=int(info.get("uptime_in_seconds", 0)))
        return cache_pb2.GetCacheStatsResponse(
            total_keys=await self.admin.size(),
            keys_by_prefix=[
                cache_pb2.PrefixCount(prefix=p, keys=n) for p, n in sorted(counts.items())
            ],
            hits=int(info.get("keyspace_hits", 0)),
            misses=int(info.get("keyspace_misses", 0)),
            hit_rate=hit_rate(info),
            expired_keys=int(info.get("expired_keys", 0)),
            evicted_keys=int(info.get("evicted_keys", 0)),
            connected_clients=int(info.get("connected_clients", 0)),
            ops_per_second=float(info.get("instantaneous_ops_per_sec", 0)),
            uptime=uptime,
        )

    async def GetCacheMemory(
        self, request: cache_pb2.GetCacheMemoryRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.GetCacheMemoryResponse:
        await self.limiter.check("database")
        info = await self.admin.info("memory")
        used = int(info.get("used_memory", 0))
        maximum = int(info.get("maxmemory", 0))
        return cache_pb2.GetCacheMemoryResponse(
            used_memory_bytes=used,
            peak_memory_bytes=int(info.get("used_memory_peak", 0)),
            max_memory_bytes=maximum,
            used_percent=round(100.0 * used / maximum, 3) if maximum else 0.0,
            fragmentation_ratio=float(info.get("mem_fragmentation_ratio", 0.0)),
            eviction_policy=str(info.get("maxmemory_policy", "")),
        )

    async def ListCacheKeys(
        self, request: cache_pb2.ListCacheKeysRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.ListCacheKeysResponse:
        await self.limiter.check("database")
        page = paging.page(request, default=DEFAULT_KEYS_PAGE)
        # the position in the token is Redis's SCAN cursor, not an offset
        found = await self.admin.scan_page(request.pattern, request.type, page.size, page.offset)
        return cache_pb2.ListCacheKeysResponse(
            keys=found.keys,
            next_page_token=page.token_at(found.cursor) if found.cursor else "",
            total_size=found.total,
        )

    async def GetCacheKey(
        self, request: cache_pb2.GetCacheKeyRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.GetCacheKeyResponse:
        await self.limiter.check("database")
        return await self.admin.get(request.key, request.format)

    @audited(lambda r: r.key)
    async def SetCacheKey(
        self, request: cache_pb2.SetCacheKeyRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.SetCacheKeyResponse:
        await self.limiter.check("database")
        value = parse_value(request.value, request.format)
        written = await self.admin.set(
            request.key,
            value,
            request.ttl_seconds if request.HasField("ttl_seconds") else None,
            request.nx,
        )
        return cache_pb2.SetCacheKeyResponse(success=written, operation_id=new_id())

    @audited(lambda r: r.key)
    async def DeleteCacheKey(
        self, request: cache_pb2.DeleteCacheKeyRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.DeleteCacheKeyResponse:
        await self.limiter.check("database")
        await self.admin.delete(request.key)
        return cache_pb2.DeleteCacheKeyResponse(operation_id=new_id())

    @audited(lambda r: f"{r.prefix}*")
    async def FlushCache(
        self, request: cache_pb2.FlushCacheRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.FlushCacheResponse:
        await self.limiter.check("database")
        deleted = await self.admin.flush_prefix(request.prefix)
        return cache_pb2.FlushCacheResponse(deleted_count=deleted, operation_id=new_id())
