"""MongoDB access of the mesh: registrations, policies, issued certificates, settings.

Documents keep the proto message as a dict (proto field names) under ``doc`` plus
the few fields that are queried or updated atomically at the top level. Times
that are compared are epoch seconds (floats), the same on MongoDB and FerretDB.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf import json_format, message
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis

from lucid.mesh import schema

MessageT = TypeVar("MessageT", bound=message.Message)

RR_KEY = "lucid:mesh:rr:{name}"


def to_doc(msg: message.Message) -> dict[str, Any]:
    """A proto message as a stored dict."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def from_doc(doc: Mapping[str, Any], cls: type[MessageT]) -> MessageT:
    """A stored dict back as a proto message."""
    return json_format.ParseDict(dict(doc), cls(), ignore_unknown_fields=True)


def _clean(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A document without its ``_id`` (FerretDB takes no projection in findAndModify)."""
    if doc is not None:
        doc.pop("_id", None)
    return doc


class DuplicateError(Exception):
    """A unique key is already taken."""


class RegistryStore:
    """``service_registry``: one document per registered instance."""

    def __init__(self, db: AsyncDatabase[Any], cache: Redis) -> None:
        self.collection = db[schema.SERVICE_REGISTRY]
        self.cache = cache

    async def insert(self, fields: Mapping[str, Any]) -> None:
        """Stores a new registration; raises ``DuplicateError`` for a known service id."""
        try:
            await self.collection.insert_one(dict(fields))
        except DuplicateKeyError:
            raise DuplicateError(fields["service_id"]) from None

    async def get(self, service_id: str) -> dict[str, Any] | None:
        """One registration."""
        return await self.collection.find_one({"service_id": service_id}, {"_id": 0})

    async def delete(self, service_id: str) -> bool:
        """Removes a registration; whether it existed."""
        result = await self.collection.delete_one({"service_id": service_id})
        return result.deleted_count == 1

    async def replace_if_version(
        self, service_id: str, version: int, fields: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Updates a registration only if nobody changed it since ``version`` was read."""
        return _clean(
            await self.collection.find_one_and_update(
                {"service_id": service_id, "revision": version},
                {"$set": {**fields, "revision": version + 1}},
                return_document=ReturnDocument.AFTER,
            )
        )

    async def find(self, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Registrations matching a query, by service name then registration time."""
        cursor = self.collection.find(dict(query), {"_id": 0}).sort(
            [("service_name", 1), ("register_at", 1), ("service_id", 1)]
        )
        return [doc async for doc in cursor]

    async def delete_critical_since(self, before_s: float) -> int:
        """Deregisters instances critical since before ``before_s``."""
        result = await self.collection.delete_many({"critical_since": {"$lt": before_s}})
        return result.deleted_count

    async def next_turn(self, service_name: str) -> int:
        """The round-robin counter of a service (0, 1, 2, …)."""
        return int(await self.cache.incr(RR_KEY.format(name=service_name))) - 1


class PolicyStore:
    """``service_mesh_policies``: traffic and security policies (``type`` tells which)."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.collection = db[schema.POLICIES]

    async def insert(self, fields: Mapping[str, Any]) -> None:
        """Stores a new policy; raises ``DuplicateError`` for a taken name."""
        try:
            await self.collection.insert_one(dict(fields))
        except DuplicateKeyError:
            raise DuplicateError(fields["name"]) from None

    async def list(self, kind: str, *, enabled_only: bool, skip: int, limit: int) -> list[Any]:
        """A page of policies of one type, highest priority first."""
        query: dict[str, Any] = {"type": kind}
        if enabled_only:
            query["enabled"] = True
        cursor = (
            self.collection.find(query, {"_id": 0})
            .sort([("priority", -1), ("name", 1)])
            .skip(skip)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def count(self, kind: str, *, enabled_only: bool) -> int:
        """How many policies of one type."""
        query: dict[str, Any] = {"type": kind}
        if enabled_only:
            query["enabled"] = True
        return await self.collection.count_documents(query)

    async def delete(self, kind: str, policy_id: str) -> bool:
        """Removes a policy; whether it existed."""
        result = await self.collection.delete_one({"type": kind, "policy_id": policy_id})
        return result.deleted_count == 1


class SettingsStore:
    """``mesh_settings``: the mTLS settings and circuit-breaker overrides, by key."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.collection = db[schema.SETTINGS]

    async def put(self, key: str, value: Mapping[str, Any], updated_at: float) -> int:
        """Stores a value; returns the settings version after the change."""
        await self.collection.update_one(
            {"key": key}, {"$set": {"value": dict(value), "updated_at": updated_at}}, upsert=True
        )
        counter = await self.collection.find_one_and_update(
            {"key": "_version"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(counter["value"]) if counter else 1

    async def get(self, key: str) -> dict[str, Any] | None:
        """One stored value with its ``updated_at``."""
        return await self.collection.find_one({"key": key}, {"_id": 0})

    async def prefixed(self, prefix: str) -> list[dict[str, Any]]:
        """Every value whose key starts with ``prefix``."""
        cursor = self.collection.find({"key": {"$regex": f"^{prefix}"}}, {"_id": 0})
        return [doc async for doc in cursor.sort("key", 1)]

    async def version(self) -> int:
        """How many changes the settings have seen."""
        counter = await self.collection.find_one({"key": "_version"})
        return int(counter["value"]) if counter else 0


class CertificateStore:
    """``mesh_certificates``: every certificate the mesh CA issued, and revocations."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.collection = db[schema.CERTIFICATES]

    async def record(self, fields: Mapping[str, Any]) -> None:
        """Records an issued certificate."""
        await self.collection.insert_one(dict(fields))

    async def get(self, serial_number: str) -> dict[str, Any] | None:
        """One issued certificate by serial (hex)."""
        return await self.collection.find_one({"serial_number": serial_number}, {"_id": 0})

    async def revoke_at(self, serial_number: str, revoke_at: float) -> None:
        """Marks a certificate revoked from ``revoke_at`` on."""
        await self.collection.update_one(
            {"serial_number": serial_number}, {"$set": {"revoke_at": revoke_at}}
        )
