"""The dashboard's metric history (GetMetrics): every overview (GetOverview and each
StreamDashboard tick) records what it saw — this host's CPU, memory and disk use, its
network byte counters and the live sessions — and GetMetrics returns one metric over a
timeframe (default one hour) with its minimum, maximum and average. There is no history
for times no dashboard was looking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from lucid.admin.overview import Overview
from lucid.admin.store.metric_samples import MetricSample, MetricSampleStore
from lucid.lib.clock import Clock

TIMEFRAMES = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
UNITS = {
    "cpu": "percent",
    "memory": "percent",
    "disk": "percent",
    "network": "bytes",
    "sessions": "sessions",
}
MAX_POINTS = 1000


@dataclass(frozen=True)
class Series:
    """One metric over a timeframe."""

    unit: str
    points: list[tuple[datetime, float]]
    low: float
    high: float
    average: float


class Metrics:
    """Recording samples and reading series."""

    def __init__(self, store: MetricSampleStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def record(self, view: Overview) -> None:
        """Keeps what an overview saw."""
        used = view.health.resources
        await self.store.add(
            MetricSample(
                at=self.clock.now(),
                cpu=used.cpu_percent,
                memory=used.memory_percent,
                disk=used.disk_percent,
                network=float(used.network_in_bytes + used.network_out_bytes),
                sessions=float(view.sessions_active + view.sessions_idle),
            )
        )

    async def series(self, metric: str, timeframe: str) -> Series:
        """``metric`` (cpu, memory, disk, network, sessions) over ``timeframe``."""
        start = self.clock.now() - TIMEFRAMES[timeframe or "1h"]
        samples = await self.store.since(start, MAX_POINTS)
        points = [(s.at, float(getattr(s, metric))) for s in samples]
        values = [v for _, v in points]
        if not values:
            return Series(UNITS[metric], [], 0.0, 0.0, 0.0)
        return Series(UNITS[metric], points, min(values), max(values), sum(values) / len(values))
