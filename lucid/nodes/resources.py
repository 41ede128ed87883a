"""Node resources: hardware and usage, metric series, alert thresholds, reservations.

Free capacity is the hardware less the live reservations; a reservation that
does not fit is RESOURCE_EXHAUSTED (spec 05 "5009 allocation"). Metric series
come from the heartbeat samples (kept 90 days), averaged per bucket of the
requested granularity (by default 1 m for 1 h, 5 m for 6 h, 15 m for 24 h, 1 h
for 7 d).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.nodes.callers import Caller, audit
from lucid.nodes.fleet import Fleet
from lucid.nodes.store.metrics import AllocationRecord, AllocationStore, MetricStore, SampleRecord
from lucid.nodes.store.nodes import NodeRecord
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.runtime.errors import ErrorCode, LucidError

RANGES: dict[int, timedelta] = {
    npb.TIME_RANGE_UNSPECIFIED: timedelta(hours=1),
    npb.TIME_RANGE_1H: timedelta(hours=1),
    npb.TIME_RANGE_6H: timedelta(hours=6),
    npb.TIME_RANGE_24H: timedelta(hours=24),
    npb.TIME_RANGE_7D: timedelta(days=7),
}
DEFAULT_BUCKETS: dict[int, int] = {
    npb.TIME_RANGE_UNSPECIFIED: npb.GRANULARITY_1M,
    npb.TIME_RANGE_1H: npb.GRANULARITY_1M,
    npb.TIME_RANGE_6H: npb.GRANULARITY_5M,
    npb.TIME_RANGE_24H: npb.GRANULARITY_15M,
    npb.TIME_RANGE_7D: npb.GRANULARITY_1H,
}
BUCKET_S: dict[int, int] = {
    npb.GRANULARITY_1M: 60,
    npb.GRANULARITY_5M: 300,
    npb.GRANULARITY_15M: 900,
    npb.GRANULARITY_1H: 3600,
}


@dataclass(frozen=True)
class Capacity:
    """A node's hardware, latest sample, reservations and what is free."""

    node: NodeRecord
    current: SampleRecord | None
    allocations: list[AllocationRecord]
    free_cpu_cores: float
    free_memory_bytes: int
    free_storage_bytes: int


def bucketed(samples: list[SampleRecord], bucket_s: int) -> list[SampleRecord]:
    """Samples averaged per bucket (the bucket's start as its time)."""
    groups: dict[int, list[SampleRecord]] = {}
    for sample in samples:
        groups.setdefault(int(sample.sample_time.timestamp()) // bucket_s, []).append(sample)
    out = []
    for key in sorted(groups):
        group = groups[key]
        values: dict[str, float] = {}
        for f in fields(SampleRecord):
            if f.name in ("node_id", "sample_time"):
                continue
            values[f.name] = sum(float(getattr(s, f.name)) for s in group) / len(group)
        out.append(
            SampleRecord(
                node_id=group[0].node_id,
                sample_time=datetime.fromtimestamp(key * bucket_s, tz=group[0].sample_time.tzinfo),
                cpu_percent=values["cpu_percent"],
                memory_percent=values["memory_percent"],
                disk_percent=values["disk_percent"],
                gpu_percent=values["gpu_percent"],
                network_in_bytes_per_second=round(values["network_in_bytes_per_second"]),
                network_out_bytes_per_second=round(values["network_out_bytes_per_second"]),
                load_average=values["load_average"],
                active_sessions=round(values["active_sessions"]),
            )
        )
    return out


class Resources:
    """Resource reads and reservations."""

    def __init__(
        self, fleet: Fleet, metrics: MetricStore, allocations: AllocationStore, clock: Clock
    ) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self.allocations = allocations
        self.clock = clock

    async def capacity(self, node_id: str, caller: Caller) -> Capacity:
        """What a node has, uses and has free."""
        node = await self.fleet.get(node_id, caller)
        live = await self.allocations.live(node_id, self.clock.now())
        return Capacity(
            node=node,
            current=await self.metrics.latest(node_id),
            allocations=live,
            free_cpu_cores=node.hardware.get("cpu_cores", 0) - sum(a.cpu_cores for a in live),
            free_memory_bytes=int(node.hardware.get("memory_bytes", 0))
            - sum(a.memory_bytes for a in live),
            free_storage_bytes=int(node.hardware.get("storage_bytes", 0))
            - sum(a.storage_bytes for a in live),
        )

    async def series(
        self, node_id: str, time_range: int, granularity: int, caller: Caller
    ) -> list[SampleRecord]:
        """A node's samples over a range, averaged per bucket."""
        await self.fleet.get(node_id, caller)
        start = self.clock.now() - RANGES[time_range]
        bucket = BUCKET_S[granularity or DEFAULT_BUCKETS[time_range]]
        return bucketed(await self.metrics.since(node_id, start), bucket)

    async def set_thresholds(
        self, node_id: str, thresholds: dict[str, float], caller: Caller
    ) -> NodeRecord:
        """Sets alert thresholds (0 means the default)."""
        return await self.fleet.update(node_id, {"thresholds": thresholds}, caller)

    async def allocate(
        self,
        node_id: str,
        want: AllocationRecord,
        duration_s: int,
        caller: Caller,
    ) -> AllocationRecord:
        """Reserves capacity; RESOURCE_EXHAUSTED when it does not fit."""
        free = await self.capacity(node_id, caller)
        node = free.node
        bandwidth = max(
            (int(i.get("bandwidth_mbps", 0)) for i in node.hardware.get("network_interfaces", [])),
            default=0,
        ) - sum(a.bandwidth_mbps for a in free.allocations)
        short = [
            name
            for name, wanted, have in (
                ("cpu_cores", want.cpu_cores, free.free_cpu_cores),
                ("memory_bytes", want.memory_bytes, free.free_memory_bytes),
                ("storage_bytes", want.storage_bytes, free.free_storage_bytes),
                ("bandwidth_mbps", want.bandwidth_mbps, bandwidth),
            )
            if wanted > have
        ]
        if short:
            raise LucidError(
                ErrorCode.ERROR_CODE_QUOTA_EXCEEDED,
                f"node {node_id} has not enough free {', '.join(short)}",
            )
        now = self.clock.now()
        record = AllocationRecord(
            allocation_id=new_id(),
            node_id=node_id,
            cpu_cores=want.cpu_cores,
            memory_bytes=want.memory_bytes,
            storage_bytes=want.storage_bytes,
            bandwidth_mbps=want.bandwidth_mbps,
            purpose=want.purpose,
            created_at=now,
            expires_at=now + timedelta(seconds=duration_s) if duration_s else None,
        )
        await self.allocations.insert(record)
        await audit(
            self.fleet.audit,
            caller,
            "node.allocate",
            node_id,
            details={"allocation_id": record.allocation_id},
        )
        return record
