"""Call metrics of one process and their Prometheus exposition (``/metrics``).

The pipeline records every call here (``Metrics.record``): a count per rpc and status and
a latency histogram per rpc and status, kept as plain counters so the hot path takes no
lock; a bounded reservoir per rpc (the newest ``RESERVOIR`` calls) gives p50/p95/p99 to the
benchmarks. A Prometheus ``CollectorRegistry`` of its own (one per cluster server, so
several servers in one test process do not mix) turns them into
``lucid_rpc_requests_total`` and ``lucid_rpc_duration_seconds`` at scrape time, next to
the gauges a cluster adds (``Metrics.gauge``: breaker states, queue depths, chain height,
recorder fps, payout states), read when scraped. ``MetricsEndpoint`` serves the registry
over HTTP on loopback (``Settings.metrics_port``).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

log = logging.getLogger("lucid.metrics")

RESERVOIR = 2048
BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Upper bounds of the latency histogram, seconds (``+Inf`` follows)."""

Reading = float | Mapping[tuple[str, ...], float]
"""What a gauge's reader returns: one value, or a value per label tuple."""


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


@dataclass
class StatusStats:
    """Calls of one rpc that ended with one status: count, total and histogram."""

    count: int = 0
    sum_s: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    """Calls per bucket (not cumulative); the last is above every bound."""

    def observe(self, seconds: float) -> None:
        """Counts one call that took ``seconds``."""
        self.count += 1
        self.sum_s += seconds
        self.buckets[bisect.bisect_left(BUCKETS_S, seconds)] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus ``le`` buckets."""
        found: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*BUCKETS_S, float("inf")), self.buckets, strict=True):
            total += count
            found.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return found


@dataclass
class MethodStats:
    """Counters of one rpc."""

    calls: int = 0
    errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RESERVOIR))
    statuses: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, StatusStats] = field(default_factory=dict)

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


@dataclass(frozen=True)
class Gauge:
    """A gauge read when scraped."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    read: Callable[[], Reading]


class Metrics(Collector):
    """All rpcs of a process, and the registry that exposes them."""

    def __init__(self, cluster: str = "", *, sample_s: float = 10.0) -> None:
        self.cluster = cluster
        self.sample_s = sample_s
        """Default refresh interval of ``sampled`` gauges."""
        self.started = time.monotonic()
        self.methods: dict[str, MethodStats] = {}
        self.active = 0
        self._gauges: list[Gauge] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def record(self, method: str, status: str, duration_ms: float) -> None:
        """Counts one finished call."""
        stats = self.methods.get(method)
        if stats is None:
            stats = self.methods[method] = MethodStats()
        stats.calls += 1
        if status not in {"OK", "CANCELLED"}:
            stats.errors += 1
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        stats.latencies_ms.append(duration_ms)
        per_status = stats.by_status.get(status)
        if per_status is None:
            per_status = stats.by_status[status] = StatusStats()
        per_status.observe(duration_ms / 1000)

    @property
    def uptime_s(self) -> float:
        """Seconds since the process started serving."""
        return time.monotonic() - self.started

    def gauge(
        self,
        name: str,
        documentation: str,
        read: Callable[[], Reading],
        labels: Sequence[str] = (),
    ) -> None:
        """Adds a gauge ``lucid_<name>`` (with a ``cluster`` label) that ``read`` gives when
        scraped: one value, or ``{label values: value}`` for ``labels``. ``read`` runs in the
        scraping thread, so it only reads memory (a task refreshes what needs I/O)."""
        self._gauges.append(Gauge(f"lucid_{name}", documentation, tuple(labels), read))

    def sampled(
        self,
        name: str,
        documentation: str,
        sample: Callable[[], Awaitable[Reading]],
        *,
        labels: Sequence[str] = (),
        interval_s: float | None = None,
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """A gauge whose value needs I/O (a count in the store): ``sample`` runs every
        ``interval_s`` (default ``sample_s``) in the returned task (a ``ClusterApp.tasks``
        entry) and a scrape reads the last value. A failed sample keeps the last value and
        is tried again."""
        last: list[Reading] = [{} if labels else 0.0]
        self.gauge(name, documentation, lambda: last[0], labels=labels)

        async def refresh() -> None:
            while True:
                try:
                    last[0] = await sample()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("metric sample failed", extra={"metric": name, "error": str(exc)})
                await asyncio.sleep(self.sample_s if interval_s is None else interval_s)

        return refresh

    def exposition(self) -> bytes:
        """The Prometheus text format of everything registered."""
        return bytes(generate_latest(self.registry))

    # -- prometheus_client Collector -----------------------------------------------

    def collect(self) -> Iterator[Any]:
        cluster = self.cluster
        requests = CounterMetricFamily(
            "lucid_rpc_requests",
            "Finished rpcs by method and gRPC status.",
            labels=["cluster", "method", "status"],
        )
        latency = HistogramMetricFamily(
            "lucid_rpc_duration_seconds",
            "Time from a call's arrival to its status, by method and gRPC status.",
            labels=["cluster", "method", "status"],
        )
        for method, stats in list(self.methods.items()):
            for status, per_status in list(stats.by_status.items()):
                labels = [cluster, method, status]
                requests.add_metric(labels, per_status.count)
                latency.add_metric(labels, per_status.cumulative(), per_status.sum_s)
        yield requests
        yield latency
        in_flight = GaugeMetricFamily(
            "lucid_rpc_in_flight", "Rpcs being served now.", labels=["cluster"]
        )
        in_flight.add_metric([cluster], self.active)
        yield in_flight
        uptime = GaugeMetricFamily(
            "lucid_uptime_seconds", "Seconds since the server started.", labels=["cluster"]
        )
        uptime.add_metric([cluster], self.uptime_s)
        yield uptime
        for gauge in list(self._gauges):
            yield from self._read(gauge)

    def _read(self, gauge: Gauge) -> Iterable[Any]:
        family = GaugeMetricFamily(
            gauge.name, gauge.documentation, labels=["cluster", *gauge.labels]
        )
        try:
            reading = gauge.read()
        except Exception:  # a reader's bug must not break the whole scrape
            log.warning("metric reader failed", exc_info=True, extra={"metric": gauge.name})
            return ()
        if isinstance(reading, Mapping):
            for values, value in reading.items():
                family.add_metric([self.cluster, *values], float(value))
        else:
            family.add_metric([self.cluster], float(reading))
        return (family,)


class MetricsEndpoint:
    """``/metrics`` of one server: Prometheus' own HTTP server on a thread, on loopback."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.wanted = port
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Listens on the wanted port, or a free one if it is taken; returns the port."""
        try:
            server, thread = start_http_server(
                self.wanted, addr=self.host, registry=self.metrics.registry
            )
        except OSError as exc:
            if self.wanted == 0:
                raise
            log.warning(
                "metrics port taken; serving /metrics on a free port",
                extra={"port": self.wanted, "error": str(exc)},
            )
            server, thread = start_http_server(0, addr=self.host, registry=self.metrics.registry)
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])
        return self.port

    @property
    def url(self) -> str:
        """Where it is scraped."""
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stops serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
