"""Health and statistics of the stores: MongoDB (FerretDB locally), Redis, the blob volume.

Each probe answers within the dependency timeout and never raises: a store that
does not answer is reported unhealthy with the reason. The blob volume is
healthy when it exists, is writable and is below 80 % of its logical quota (and
of its disk); degraded at 80 %, unhealthy at 90 % (spec 08 §4).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from lucid.runtime.errors import ErrorCode, LucidError
from lucid.storage.usage import DirectoryUsage, measure, probe_writable
from lucid.storage.v1 import database_pb2, volume_pb2

HEALTHY = database_pb2.HEALTH_STATUS_HEALTHY
DEGRADED = database_pb2.HEALTH_STATUS_DEGRADED
UNHEALTHY = database_pb2.HEALTH_STATUS_UNHEALTHY


@dataclass
class BlobVolume:
    """The blob volume (chunks and other cluster files) and its logical quota."""

    path: Path
    quota_bytes: int


@dataclass(frozen=True)
class StoreReport:
    """The health of one store."""

    name: str
    status: database_pb2.HealthStatus.ValueType
    version: str = ""
    latency_s: float = 0.0
    message: str = ""
    usage: DirectoryUsage | None = None


def overall(reports: list[StoreReport]) -> database_pb2.HealthStatus.ValueType:
    """Healthy when all are, unhealthy when none answers, degraded in between."""
    if all(r.status == HEALTHY for r in reports):
        return HEALTHY
    if all(r.status == UNHEALTHY for r in reports):
        return UNHEALTHY
    return DEGRADED


class StoreProbes:
    """Probes and statistics of the stores storage watches."""

    def __init__(
        self,
        mongo: AsyncMongoClient[dict[str, Any]],
        database: str,
        redis: aioredis.Redis,
        blob: BlobVolume,
        timeout_s: float,
    ) -> None:
        self.mongo = mongo
        self.database = database
        self.redis = redis
        self.blob = blob
        self.timeout_s = timeout_s

    async def _timed(self, name: str, work: Any) -> StoreReport:
        started = time.perf_counter()
        try:
            version = await asyncio.wait_for(work, self.timeout_s)
        except Exception as exc:
            return StoreReport(
                name, UNHEALTHY, latency_s=time.perf_counter() - started, message=_reason(exc)
            )
        return StoreReport(name, HEALTHY, version, time.perf_counter() - started)

    async def mongodb(self) -> StoreReport:
        """MongoDB answers ``ping``; its version from ``buildInfo``."""

        async def work() -> str:
            await self.mongo.admin.command("ping")
            info = await self.mongo.admin.command("buildInfo")
            version = str(info.get("version", ""))
            if "ferretdbVersion" in info:
                version += f" (FerretDB {info['ferretdbVersion']})"
            return version

        return await self._timed("mongodb", work())

    async def redis_report(self) -> StoreReport:
        """Redis answers ``PING``; its version from ``INFO server``."""

        async def work() -> str:
            await self.redis.ping()
            info = await self.redis.info("server")
            return str(info.get("redis_version", ""))

        return await self._timed("redis", work())

    async def blob_report(self) -> StoreReport:
        """The blob volume exists, is writable and has room."""
        started = time.perf_counter()
        try:
            usage = await asyncio.to_thread(self._blob_usage)
        except OSError as exc:
            return StoreReport(
                "blob", UNHEALTHY, latency_s=time.perf_counter() - started, message=_reason(exc)
            )
        latency = time.perf_counter() - started
        level = usage.alert_level
        if level == volume_pb2.ALERT_LEVEL_CRITICAL:
            status, message = UNHEALTHY, f"{usage.usage_percent:.1f} % used (critical ≥ 90 %)"
        elif level == volume_pb2.ALERT_LEVEL_WARNING:
            status, message = DEGRADED, f"{usage.usage_percent:.1f} % used (warning ≥ 80 %)"
        else:
            status, message = HEALTHY, ""
        return StoreReport("blob", status, "", latency, message, usage)

    def _blob_usage(self) -> DirectoryUsage:
        probe_writable(self.blob.path)
        return measure(self.blob.path, self.blob.quota_bytes)

    async def all(self) -> list[StoreReport]:
        """Every store, probed concurrently."""
        reports = await asyncio.gather(self.mongodb(), self.redis_report(), self.blob_report())
        return list(reports)

    async def mongo_stats(self) -> database_pb2.MongoStats:
        """``dbStats`` and ``serverStatus`` of the Lucid database; ``LUCID_ERR_5003`` if it
        does not answer."""
        db = self.mongo[self.database]
        try:
            stats = await asyncio.wait_for(db.command("dbStats"), self.timeout_s * 5)
        except PyMongoError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"MongoDB does not answer: {exc}"
            ) from exc
        result = database_pb2.MongoStats(
            database=self.database,
            collections=int(stats.get("collections", 0)),
            documents=int(stats.get("objects", 0)),
            data_size_bytes=int(stats.get("dataSize", 0)),
            storage_size_bytes=int(stats.get("storageSize", 0)),
            indexes=int(stats.get("indexes", 0)),
            index_size_bytes=int(stats.get("indexSize", 0)),
        )
        try:
            status = await asyncio.wait_for(
                self.mongo.admin.command("serverStatus"), self.timeout_s * 5
            )
        except Exception:  # partial support on FerretDB: counters stay empty
            return result
        connections = status.get("connections", {})
        result.connections_current = int(connections.get("current", 0))
        result.connections_available = int(connections.get("available", 0))
        for name, value in status.get("opcounters", {}).items():
            if isinstance(value, int | float):
                result.operations[name] = int(value)
        return result

    async def redis_stats(self) -> database_pb2.RedisStats:
        """``INFO`` of Redis."""
        info = await asyncio.wait_for(self.redis.info(), self.timeout_s * 5)
        keys = await self.redis.dbsize()
        return database_pb2.RedisStats(
            used_memory_bytes=int(info.get("used_memory", 0)),
            keys=int(keys),
            hit_rate=hit_rate(info),
            connected_clients=int(info.get("connected_clients", 0)),
            ops_per_second=float(info.get("instantaneous_ops_per_sec", 0)),
        )


def hit_rate(info: dict[str, Any]) -> float:
    """hits / (hits + misses) from Redis ``INFO stats``; 0 before any lookup."""
    hits = int(info.get("keyspace_hits", 0))
    misses = int(info.get("keyspace_misses", 0))
    return hits / (hits + misses) if hits + misses else 0.0


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "no answer within the timeout"
    return text[:300]
