"""The aggregated health of the mesh: the one fan-out behind the gateway's ``GetHealth``
(which the edge's ``/health`` and Envoy's ``/health`` route delegate to).

One round of probes answers every caller for ``CACHE_S`` (1 s), and concurrent callers
share the round in progress, so health requests cannot amplify load. A round probes
MongoDB (required), Redis, every cluster's ``grpc.health.v1`` and every chain
validator's, each validator directly by its port. Health probes never pass a circuit
breaker (the channel layer lets health checks through), so they report what the
upstream says now, not what a breaker remembers. The validators decide whether blocks
can still become final: all serving → healthy; fewer, but still enough approvals for
the finality rule (3a ≥ 2N) → degraded; fewer than that → unhealthy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.gateway.v1 import gateway_pb2
from lucid.lib.clock import Clock
from lucid.runtime.config import CLUSTERS, Settings
from lucid.runtime.datastores import Dependency
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.server import Runtime

SERVICE_NAME = "api-gateway"
CACHE_S = 1.0
PROBE_TIMEOUT_S = 1.0
FINALITY = "finality"

HEALTHY = gateway_pb2.HEALTH_STATUS_HEALTHY
DEGRADED = gateway_pb2.HEALTH_STATUS_DEGRADED
UNHEALTHY = gateway_pb2.HEALTH_STATUS_UNHEALTHY


@dataclass(frozen=True)
class Probe:
    """The outcome of probing one dependency."""

    name: str
    status: int
    required: bool
    message: str
    response_time_ms: int
    checked_at: float


@dataclass(frozen=True)
class Report:
    """One round of probes."""

    status: int
    probes: tuple[Probe, ...]
    checked_at: float

    @property
    def down(self) -> list[Probe]:
        """The required dependencies that are down."""
        return [p for p in self.probes if p.required and p.status == UNHEALTHY]


def required_approvals(validators: int) -> int:
    """The least ``a`` with 3a ≥ 2N: approvals that make a block final."""
    return -(-2 * validators // 3)


def validator_name(index: int) -> str:
    """The dependency name of chain validator ``index``."""
    return f"validator-{index}"


class HealthAggregator:
    """Probes the mesh at most once per ``cache_s`` and keeps the last report."""

    def __init__(
        self,
        runtime: Runtime,
        stores: Mapping[str, Dependency],
        redis_ok: Callable[[], bool],
        cache_s: float = CACHE_S,
    ) -> None:
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.clock: Clock = runtime.clock
        self.stores = stores
        self.redis_ok = redis_ok
        self.cache_s = cache_s
        self.rounds = 0
        self._last: Report | None = None
        self._running: asyncio.Task[Report] | None = None

    async def serving(self) -> Report:
        """The report when the mesh can serve; UNAVAILABLE naming the required
        dependencies that are down (MongoDB: ``LUCID_ERR_5003``; finality: 5004)."""
        report = await self.report()
        down = report.down
        if down:
            names = ", ".join(p.name for p in down)
            raise LucidError(
                ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE
                if any(p.name == "mongodb" for p in down)
                else ErrorCode.ERROR_CODE_DEPENDENCY_UNAVAILABLE,
                f"{SERVICE_NAME} is unhealthy: {names} down",
                metadata={"dependencies": names},
            )
        return report

    async def report(self) -> Report:
        """The last report if younger than ``cache_s``, else a fresh round (shared by
        every caller that asks while it runs)."""
        last = self._last
        if last is not None and self.clock.timestamp() - last.checked_at < self.cache_s:
            return last
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._round())
        return await asyncio.shield(self._running)

    async def _round(self) -> Report:
        self.rounds += 1
        checks = [self._store("mongodb", required=True), self._store("redis", required=False)]
        checks += [self._cluster(c) for c in CLUSTERS if c != "gateway"]
        checks += [self._validator(i) for i in range(self.settings.validators)]
        probes = list(await asyncio.gather(*checks))
        probes.append(self._finality(probes))
        if any(p.required and p.status == UNHEALTHY for p in probes):
            status = UNHEALTHY
        elif any(p.status != HEALTHY for p in probes) or not self.redis_ok():
            status = DEGRADED
        else:
            status = HEALTHY
        report = Report(status, tuple(probes), self.clock.timestamp())
        self._last = report
        return report

    def _probe(
        self, name: str, status: int, started: float, message: str = "", *, required: bool
    ) -> Probe:
        return Probe(
            name=name,
            status=status,
            required=required,
            message=message,
            response_time_ms=round((time.perf_counter() - started) * 1000),
            checked_at=self.clock.timestamp(),
        )

    async def _store(self, name: str, *, required: bool) -> Probe:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self.stores[name].check(), PROBE_TIMEOUT_S)
        except Exception as exc:  # any failure means "down"
            status = UNHEALTHY if required else DEGRADED
            return self._probe(name, status, started, type(exc).__name__, required=required)
        return self._probe(name, HEALTHY, started, required=required)

    async def _check(self, name: str, channel: grpc.aio.Channel, started: float) -> Probe:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            return self._probe(
                name, DEGRADED, started, f"unreachable: {exc.code().name}", required=False
            )
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            message = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            return self._probe(name, DEGRADED, started, message, required=False)
        return self._probe(name, HEALTHY, started, required=False)

    async def _cluster(self, cluster: str) -> Probe:
        started = time.perf_counter()
        try:
            channel = await self.runtime.channels.channel(cluster)
        except LookupError:
            return self._probe(cluster, DEGRADED, started, "not registered", required=False)
        return await self._check(cluster, channel, started)

    async def _validator(self, index: int) -> Probe:
        started = time.perf_counter()
        target = f"{self.settings.host}:{self.settings.validator_port(index)}"
        channel = self.runtime.channels.direct("blockchain", target)
        return await self._check(validator_name(index), channel, started)

    def _finality(self, probes: list[Probe]) -> Probe:
        """Whether enough validators serve for blocks to become final."""
        total = self.settings.validators
        names = {validator_name(i) for i in range(total)}
        serving = sum(1 for p in probes if p.name in names and p.status == HEALTHY)
        needed = required_approvals(total)
        message = f"{serving} of {total} validators serving; {needed} needed for finality"
        if serving == total:
            status, message = HEALTHY, ""
        elif serving >= needed:
            status = DEGRADED
        else:
            status = UNHEALTHY
        return Probe(FINALITY, status, True, message, 0, self.clock.timestamp())
