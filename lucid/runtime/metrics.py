"""In-process call metrics: counts, errors and latency percentiles per rpc.

The pipeline records every call here; the gateway's GetMetrics and the benchmarks
read it. Latencies are kept in a bounded reservoir per method (the newest
``RESERVOIR`` calls), which is enough for p50/p95/p99 of a running process.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

RESERVOIR = 2048


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


@dataclass
class MethodStats:
    """Counters of one rpc."""

    calls: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RESERVOIR))
    statuses: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        """Calls, error rate and p50/p95/p99 latency in milliseconds."""
        ordered = sorted(self.latencies_ms)
        return {
            "calls": self.calls,
            "errors": self.errors,
            "error_rate": self.errors / self.calls if self.calls else 0.0,
            "p50_ms": percentile(ordered, 0.50),
            "p95_ms": percentile(ordered, 0.95),
            "p99_ms": percentile(ordered, 0.99),
        }


class Metrics:
    """All rpcs of a process."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.methods: dict[str, MethodStats] = {}
        self.active = 0

    def record(self, method: str, status: str, duration_ms: float) -> None:
        """Counts one finished call."""
        stats = self.methods.setdefault(method, MethodStats())
        stats.calls += 1
        if status not in {"OK", "CANCELLED"}:
            stats.errors += 1
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        stats.latencies_ms.append(duration_ms)

    @property
    def uptime_s(self) -> float:
        """Seconds since the process started serving."""
        return time.monotonic() - self.started
