"""Nodes (``nodes``): registered worker nodes, their lifecycle and last heartbeat."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from lucid.nodes.store import Doc, from_doc, to_doc, translated


@dataclass(frozen=True)
class NodeRecord:
    """A stored node. Nested proto parts are kept as their JSON-like dicts."""

    node_id: str
    owner_user_id: str
    name: str
    node_type: int
    state: int
    node_address: str
    node_public_key: str
    created_at: datetime
    updated_at: datetime
    pool_id: str = ""
    onion_address: str = ""
    port: int = 0
    hardware: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] = field(default_factory=dict)
    configuration: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    poot_score: float = 0.0
    poot_history: list[dict[str, Any]] = field(default_factory=list)
    """The last 100 scored validations, oldest first: ``{score, valid, at}``."""
    poot_latest_id: str = ""
    """The node's latest validation, rejections included."""
    stake_amount_micros: int = 0
    last_heartbeat: datetime | None = None
    start_time: datetime | None = None
    stop_time: datetime | None = None
    error_message: str = ""
    pool_priority: int = 50
    pool_join_time: datetime | None = None
    storage_assignment_id: str = ""
    """The data the node keeps for storage proofs (``lucid.nodes.storageproofs``)."""
    storage_seed: str = ""
    """The seed its data is expanded from, hex; never leaves the cluster."""
    storage_assigned_slot: int = -1
    """The task slot the data was given in (challenged from the next one)."""


@dataclass(frozen=True)
class NodeQuery:
    """A filter of ListNodes."""

    state: int = 0
    pool_id: str = ""
    node_type: int = 0
    owner_user_id: str = ""

    def filter(self) -> Doc:
        """The MongoDB filter."""
        found: Doc = {}
        for key in ("state", "pool_id", "node_type", "owner_user_id"):
            value = getattr(self, key)
            if value:
                found[key] = value
        return found


class NodeStore:
    """Reads and writes nodes."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._c = collection

    async def insert(self, record: NodeRecord) -> None:
        """Adds a node; ``DuplicateError`` when its address is registered already."""
        with translated():
            await self._c.insert_one(to_doc(record, "node_id"))

    async def get(self, node_id: str) -> NodeRecord | None:
        """A node by id."""
        with translated():
            doc = await self._c.find_one({"_id": node_id})
        return from_doc(NodeRecord, doc, "node_id") if doc else None

    async def update(
        self, node_id: str, changes: Doc, *, expect: Doc | None = None
    ) -> NodeRecord | None:
        """Sets fields when the node matches ``expect``; the updated node or None."""
        with translated():
            doc = await self._c.find_one_and_update(
                {"_id": node_id, **(expect or {})},
                {"$set": changes},
                return_document=ReturnDocument.AFTER,
            )
        return from_doc(NodeRecord, doc, "node_id") if doc else None

    async def set_storage(
        self, node_id: str, assignment_id: str, seed: str, slot: int
    ) -> NodeRecord | None:
        """Gives a node new data to keep (its storage assignment)."""
        return await self.update(
            node_id,
            {
                "storage_assignment_id": assignment_id,
                "storage_seed": seed,
                "storage_assigned_slot": slot,
            },
        )

    async def public_keys(self, node_ids: set[str]) -> dict[str, str]:
        """The registered Ed25519 keys of nodes, by node id."""
        if not node_ids:
            return {}
        with translated():
            docs = await self._c.find(
                {"_id": {"$in": sorted(node_ids)}}, {"node_public_key": 1}
            ).to_list(None)
        return {d["_id"]: d["node_public_key"] for d in docs if d.get("node_public_key")}

    async def delete(self, node_id: str) -> bool:
        """Removes a node."""
        with translated():
            result = await self._c.delete_one({"_id": node_id})
        return result.deleted_count == 1

    async def page(self, query: NodeQuery, offset: int, limit: int) -> tuple[list[NodeRecord], int]:
        """A page of nodes (oldest first) and the number of matches."""
        criteria = query.filter()
        with translated():
            total = await self._c.count_documents(criteria)
            cursor = (
                (self._c.find(criteria).sort([("created_at", ASCENDING), ("_id", ASCENDING)]))
                .skip(offset)
                .limit(limit)
            )
            docs = await cursor.to_list(None)
        return [from_doc(NodeRecord, d, "node_id") for d in docs], total

    async def name_taken(self, pool_id: str, name: str, except_id: str = "") -> bool:
        """Whether a node of that name is in the pool (names are unique per pool)."""
        with translated():
            doc = await self._c.find_one(
                {"pool_id": pool_id, "name": name, "_id": {"$ne": except_id}}, {"_id": 1}
            )
        return doc is not None

    async def in_pool(self, pool_id: str) -> list[NodeRecord]:
        """Every member of a pool."""
        with translated():
            docs = await self._c.find({"pool_id": pool_id}).to_list(None)
        return [from_doc(NodeRecord, d, "node_id") for d in docs]

    async def count_in_pool(self, pool_id: str) -> int:
        """How many nodes a pool holds."""
        with translated():
            return await self._c.count_documents({"pool_id": pool_id})

    async def all(self) -> list[NodeRecord]:
        """Every node (fleet status)."""
        with translated():
            docs = await self._c.find({}).to_list(None)
        return [from_doc(NodeRecord, d, "node_id") for d in docs]
