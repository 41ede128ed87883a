"""``sidecar_configs``: the configuration of each service's sidecar (one document per
service id, its proto under ``doc`` and its version at the top for compare-and-set)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lucid.mesh import schema
from lucid.mesh.store import from_doc, to_doc
from lucid.mesh.v1 import sidecar_pb2


class VersionConflictError(Exception):
    """Another change of the same sidecar configuration landed first."""


class SidecarConfigStore:
    """Sidecar configurations by service id, changed only from the version read."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.collection = db[schema.SIDECAR_CONFIGS]

    async def get(self, service_id: str) -> sidecar_pb2.SidecarConfig | None:
        """The stored configuration of a service, if any."""
        doc = await self.collection.find_one({"service_id": service_id}, {"_id": 0})
        return from_doc(doc["doc"], sidecar_pb2.SidecarConfig) if doc else None

    async def save(self, config: sidecar_pb2.SidecarConfig, previous_version: int) -> None:
        """Stores ``config`` if the stored version is still ``previous_version`` (0: none
        stored); raises ``VersionConflictError`` otherwise."""
        fields = {"version": config.config_version, "doc": to_doc(config)}
        if previous_version == 0:
            try:
                await self.collection.insert_one({"service_id": config.service_id, **fields})
            except DuplicateKeyError:
                raise VersionConflictError(config.service_id) from None
            return
        result = await self.collection.update_one(
            {"service_id": config.service_id, "version": previous_version}, {"$set": fields}
        )
        if result.matched_count != 1:
            raise VersionConflictError(config.service_id)
