"""What the edge served, per route, for GetMetrics (spec 01 §9 "Metrics").

The edge reports batches of samples (route, HTTP status, latency); this keeps the
newest ``PER_ROUTE`` of each route for at most 24 h and aggregates a window on
demand: request count and rate, p50/p95/p99 latency, 4xx/5xx counts, error rate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from lucid.runtime.metrics import percentile

PER_ROUTE = 50_000
MAX_AGE_S = 86_400.0


@dataclass(frozen=True)
class Sample:
    """One request the edge served."""

    finished_at: float
    http_status: int
    latency_ms: float


@dataclass(frozen=True)
class RouteStats:
    """The aggregate of one route (or of all) over a window."""

    method: str
    route: str
    count: int
    rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    client_errors: int
    server_errors: int

    @property
    def error_rate(self) -> float:
        """Share of requests answered 4xx or 5xx."""
        return (self.client_errors + self.server_errors) / self.count if self.count else 0.0


def aggregate(method: str, route: str, samples: Iterable[Sample], window_s: float) -> RouteStats:
    """The statistics of some samples over ``window_s``."""
    chosen = list(samples)
    latencies = sorted(s.latency_ms for s in chosen)
    return RouteStats(
        method=method,
        route=route,
        count=len(chosen),
        rate=len(chosen) / window_s if window_s else 0.0,
        p50_ms=percentile(latencies, 0.50),
        p95_ms=percentile(latencies, 0.95),
        p99_ms=percentile(latencies, 0.99),
        client_errors=sum(1 for s in chosen if 400 <= s.http_status < 500),
        server_errors=sum(1 for s in chosen if s.http_status >= 500),
    )


@dataclass
class TrafficLog:
    """Samples per (method, route)."""

    routes: dict[tuple[str, str], deque[Sample]] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)

    def add(self, method: str, route: str, sample: Sample) -> None:
        """Keeps one sample."""
        samples = self.routes.get((method, route))
        if samples is None:
            samples = self.routes[(method, route)] = deque(maxlen=PER_ROUTE)
        samples.append(sample)

    def report(
        self, samples: list[tuple[str, str, Sample]], edge_id: str, active: int, now: float
    ) -> None:
        """Takes one edge's report: its samples ``(method, route, sample)`` and how many
        connections it holds open."""
        for method, route, sample in samples:
            self.add(method, route, sample)
        self.active[edge_id or "edge"] = active
        self.prune(now)

    def prune(self, now: float) -> None:
        """Drops samples older than 24 h."""
        for key, samples in list(self.routes.items()):
            while samples and samples[0].finished_at < now - MAX_AGE_S:
                samples.popleft()
            if not samples:
                del self.routes[key]

    def window(
        self, now: float, window_s: float, route_prefix: str = ""
    ) -> tuple[RouteStats, list[RouteStats]]:
        """The total and each route's statistics over the last ``window_s``, busiest first."""
        start = now - window_s
        per_route: list[RouteStats] = []
        everything: list[Sample] = []
        for (method, route), samples in self.routes.items():
            if route_prefix and not route.startswith(route_prefix):
                continue
            recent = [s for s in samples if s.finished_at >= start]
            if recent:
                per_route.append(aggregate(method, route, recent, window_s))
                everything += recent
        per_route.sort(key=lambda r: (-r.count, r.route, r.method))
        return aggregate("", "", everything, window_s), per_route

    @property
    def active_connections(self) -> int:
        """Requests in flight at every reporting edge."""
        return sum(self.active.values())
