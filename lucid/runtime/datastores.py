"""MongoDB and Redis clients of a process, and the dependency probes on them.

Clients are created without blocking; a server starts even when a store is down
and reports NOT_SERVING until its probes pass (``health``). Each cluster owns its
collections and its Redis prefix ``lucid:<cluster>:``; ``prefix`` helps build keys.

Redis is one server (``redis://host:port/db``) or a Redis Cluster
(``redis+cluster://host:port[,host:port…]``: any of its nodes; ``redis_client``). On a
cluster every multi-key command and Lua script must keep its keys in one hash slot: the
scripts of the runtime each touch one key, and keys read together carry a hash tag (the
event streams, ``lucid:events:{events}:<type>``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio.cluster import ClusterNode, RedisCluster

from lucid.runtime.config import Settings


async def find_page(
    collection: AsyncCollection[dict[str, Any]],
    query: dict[str, Any],
    sort: list[tuple[str, int]],
    *,
    offset: int,
    limit: int,
    projection: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The documents of one page of ``query`` in ``sort`` order, and how many match
    (the store side of ``lucid.runtime.paging``)."""
    total = await collection.count_documents(query)
    cursor = collection.find(query, projection).sort(sort).skip(offset).limit(limit)
    return [doc async for doc in cursor], total


CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
"""URL schemes of a Redis Cluster, and whether they use TLS."""


def is_cluster_url(url: str) -> bool:
    """Whether a Redis URL names a Redis Cluster."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def redis_client(url: str, **options: Any) -> aioredis.Redis:
    """A client of one Redis server or of a Redis Cluster (``redis+cluster://`` with one or
    more of its nodes, comma-separated; the client finds the others and follows slot moves).
    The cluster client answers the same commands the runtime uses (multi-key ones split by
    slot where Redis allows it), so it is typed as ``Redis``."""
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        return aioredis.from_url(url, **options)
    nodes = []
    for address in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a Redis Cluster node is host:port, not {address!r}")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    options.pop("health_check_interval", None)  # per-node connections check themselves
    if parts.username or parts.password:
        options.setdefault("username", parts.username)
        options.setdefault("password", parts.password)
    client = RedisCluster(
        startup_nodes=nodes,
        ssl=CLUSTER_SCHEMES[parts.scheme],
        require_full_coverage=True,
        **options,
    )
    return cast("aioredis.Redis", client)


class Dependency(Protocol):
    """Something a server needs in order to serve."""

    name: str

    async def check(self) -> None:
        """Returns when the dependency answers; raises otherwise."""
        ...


@dataclass
class MongoDependency:
    """MongoDB answers ``ping``."""

    client: AsyncMongoClient[Any]
    name: str = "mongodb"

    async def check(self) -> None:
        await self.client.admin.command("ping")


@dataclass
class RedisDependency:
    """Redis answers ``PING``."""

    client: aioredis.Redis
    name: str = "redis"

    async def check(self) -> None:
        await self.client.ping()


class Datastores:
    """The stores a cluster uses; ``None`` for those it does not need."""

    def __init__(self, settings: Settings, *, mongo: bool, redis: bool) -> None:
        self.settings = settings
        self.mongo_client: AsyncMongoClient[dict[str, Any]] | None = None
        self.redis: aioredis.Redis | None = None
        timeout_ms = int(settings.dependency_timeout_s * 1000)
        if mongo:
            self.mongo_client = AsyncMongoClient(
                settings.mongodb_uri,
                serverSelectionTimeoutMS=max(timeout_ms, 500),
                connectTimeoutMS=max(timeout_ms, 500),
                tz_aware=True,
                uuidRepresentation="standard",
            )
        if redis:
            self.redis = redis_client(
                settings.redis_url,
                socket_timeout=settings.dependency_timeout_s * 2,
                socket_connect_timeout=settings.dependency_timeout_s,
                health_check_interval=30,
            )

    @property
    def db(self) -> AsyncDatabase[dict[str, Any]]:
        """The mesh's database."""
        if self.mongo_client is None:
            raise RuntimeError("this cluster does not use MongoDB")
        return self.mongo_client[self.settings.mongodb_db]

    @property
    def cache(self) -> aioredis.Redis:
        """The Redis client."""
        if self.redis is None:
            raise RuntimeError("this cluster does not use Redis")
        return self.redis

    def dependencies(self) -> list[Dependency]:
        """Probes for every store in use."""
        deps: list[Dependency] = []
        if self.mongo_client is not None:
            deps.append(MongoDependency(self.mongo_client))
        if self.redis is not None:
            deps.append(RedisDependency(self.redis))
        return deps

    async def close(self) -> None:
        """Closes every client."""
        if self.mongo_client is not None:
            await self.mongo_client.close()
        if self.redis is not None:
            await self.redis.aclose()
        await asyncio.sleep(0)


def prefix(cluster: str) -> str:
    """The Redis key prefix a cluster owns: ``lucid:<cluster>:``."""
    return f"lucid:{cluster}:"
