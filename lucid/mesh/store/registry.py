"""``service_registry``: one document per registered instance, and the round-robin
counters in Redis (``lucid:mesh:rr:<service>``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis

from lucid.mesh import schema
from lucid.mesh.store import DuplicateError, clean, from_doc, to_doc
from lucid.mesh.v1 import discovery_pb2
from lucid.runtime.wire import epoch_seconds

RR_KEY = "lucid:mesh:rr:{name}"


@dataclass(frozen=True)
class Registration:
    """A registered instance and the revision its next change must match."""

    instance: discovery_pb2.ServiceInstance
    revision: int

    @property
    def cluster(self) -> int:
        """The cluster enum value the instance belongs to."""
        return int(self.instance.cluster)


@dataclass(frozen=True)
class ServiceQuery:
    """Which live instances a list shows (0 / "" for any)."""

    cluster: int = 0
    plane: int = 0
    status: int = 0
    service_name: str = ""
    version: str = ""


def _fields(
    instance: discovery_pb2.ServiceInstance, *, now: float, expire: float
) -> dict[str, Any]:
    health = instance.health
    return {
        "service_id": instance.service_id,
        "service_name": instance.service_name,
        "cluster": instance.cluster,
        "plane": instance.plane,
        "version": instance.version,
        "status": health.status,
        "register_at": epoch_seconds(instance.register_time),
        "expire_at": expire,
        "critical_since": epoch_seconds(health.critical_since_time)
        if health.HasField("critical_since_time")
        else None,
        "updated_at": now,
        "doc": to_doc(instance),
    }


def _record(doc: dict[str, Any]) -> Registration:
    return Registration(from_doc(doc["doc"], discovery_pb2.ServiceInstance), int(doc["revision"]))


class RegistryStore:
    """Registrations in MongoDB, round-robin turns in Redis."""

    def __init__(self, db: AsyncDatabase[Any], cache: Redis) -> None:
        self.collection = db[schema.SERVICE_REGISTRY]
        self.cache = cache

    async def insert(
        self, instance: discovery_pb2.ServiceInstance, *, now: float, expire: float
    ) -> None:
        """Stores a new registration; raises ``DuplicateError`` for a known service id."""
        try:
            await self.collection.insert_one(
                {**_fields(instance, now=now, expire=expire), "revision": 0}
            )
        except DuplicateKeyError:
            raise DuplicateError(instance.service_id) from None

    async def get(self, service_id: str) -> Registration | None:
        """One registration."""
        doc = await self.collection.find_one({"service_id": service_id}, {"_id": 0})
        return _record(doc) if doc else None

    async def delete(self, service_id: str) -> bool:
        """Removes a registration; whether it existed."""
        result = await self.collection.delete_one({"service_id": service_id})
        return result.deleted_count == 1

    async def replace_if_revision(
        self,
        registration: Registration,
        instance: discovery_pb2.ServiceInstance,
        *,
        now: float,
        expire: float,
    ) -> bool:
        """Stores ``instance`` only if nobody changed it since ``registration`` was read."""
        revision = registration.revision
        changed = clean(
            await self.collection.find_one_and_update(
                {"service_id": instance.service_id, "revision": revision},
                {"$set": {**_fields(instance, now=now, expire=expire), "revision": revision + 1}},
                return_document=ReturnDocument.AFTER,
            )
        )
        return changed is not None

    async def live(self, where: ServiceQuery, now: float) -> list[Registration]:
        """Unexpired registrations matching ``where``, by name then registration time."""
        query: dict[str, Any] = {"expire_at": {"$gt": now}}
        for name in ("cluster", "plane", "status", "service_name", "version"):
            value = getattr(where, name)
            if value:
                query[name] = value
        cursor = self.collection.find(query, {"_id": 0}).sort(
            [("service_name", 1), ("register_at", 1), ("service_id", 1)]
        )
        return [_record(doc) async for doc in cursor]

    async def delete_critical_since(self, before_s: float) -> int:
        """Deregisters instances critical since before ``before_s``."""
        result = await self.collection.delete_many({"critical_since": {"$lt": before_s}})
        return result.deleted_count

    async def next_turn(self, service_name: str) -> int:
        """The round-robin counter of a service (0, 1, 2, …)."""
        return int(await self.cache.incr(RR_KEY.format(name=service_name))) - 1
