"""Resource samples (``node_resource_metrics``, 90 days) and capacity reservations
(``node_allocations``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from lucid.lib.ids import new_id
from lucid.nodes.store import Doc, from_doc, to_doc, translated


@dataclass(frozen=True)
class SampleRecord:
    """One resource sample of a node."""

    node_id: str
    sample_time: datetime
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    disk_percent: float = 0.0
    gpu_percent: float = 0.0
    network_in_bytes_per_second: int = 0
    network_out_bytes_per_second: int = 0
    load_average: float = 0.0
    active_sessions: int = 0


@dataclass(frozen=True)
class AllocationRecord:
    """A reservation of node capacity."""

    allocation_id: str
    node_id: str
    cpu_cores: float
    memory_bytes: int
    storage_bytes: int
    bandwidth_mbps: int
    purpose: str
    created_at: datetime
    expires_at: datetime | None = None


class MetricStore:
    """Appends and reads samples."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._c = collection

    async def append(self, sample: SampleRecord) -> None:
        """Stores one sample."""
        doc = {**dataclasses.asdict(sample), "_id": new_id()}
        with translated():
            await self._c.insert_one(doc)

    async def latest(self, node_id: str) -> SampleRecord | None:
        """The newest sample of a node."""
        with translated():
            doc = await self._c.find_one({"node_id": node_id}, sort=[("sample_time", DESCENDING)])
        return self._record(doc) if doc else None

    async def since(self, node_id: str, start: datetime) -> list[SampleRecord]:
        """A node's samples from ``start`` on, oldest first."""
        with translated():
            docs = (
                await self._c.find({"node_id": node_id, "sample_time": {"$gte": start}})
                .sort("sample_time", ASCENDING)
                .to_list(None)
            )
        return [self._record(d) for d in docs]

    @staticmethod
    def _record(doc: Doc) -> SampleRecord:
        return from_doc(SampleRecord, {**doc, "_id": doc["node_id"]}, "node_id")


class AllocationStore:
    """Reads and writes reservations."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._c = collection

    async def insert(self, record: AllocationRecord) -> None:
        """Stores a reservation."""
        with translated():
            await self._c.insert_one(to_doc(record, "allocation_id"))

    async def live(self, node_id: str, now: datetime) -> list[AllocationRecord]:
        """A node's reservations that have not lapsed."""
        with translated():
            docs = await self._c.find(
                {"node_id": node_id, "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}
            ).to_list(None)
        return [from_doc(AllocationRecord, d, "allocation_id") for d in docs]
