"""Health: ``grpc.health.v1`` on every server, driven by dependency probes.

A ``HealthMonitor`` probes the server's required dependencies every
``health_interval_s``; while any is down the overall status ("") and every
service the cluster serves are NOT_SERVING, and SERVING again when all answer.
Listeners (``on_change``) learn of transitions, e.g. to create the schema once
MongoDB is reachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from grpc_health.v1 import health, health_pb2

from lucid.runtime.datastores import Dependency

log = logging.getLogger("lucid.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class DependencyState:
    """The last probe of one dependency."""

    name: str
    healthy: bool = False
    error: str = ""
    latency_ms: float = 0.0


class HealthMonitor:
    """Keeps a health servicer's statuses in line with the dependencies."""

    def __init__(
        self,
        services: Sequence[str],
        dependencies: Sequence[Dependency],
        *,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self.servicer = health.aio.HealthServicer()
        self.services = list(services)
        self.dependencies = list(dependencies)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.states = {d.name: DependencyState(d.name) for d in dependencies}
        self.serving: bool | None = None
        self.listeners: list[Callable[[bool], Awaitable[None]]] = []

    def on_change(self, listener: Callable[[bool], Awaitable[None]]) -> None:
        """Calls ``listener(serving)`` after each transition (and after the first probe)."""
        self.listeners.append(listener)

    async def _probe(self, dependency: Dependency) -> DependencyState:
        state = self.states[dependency.name]
        start = time.perf_counter()
        try:
            await asyncio.wait_for(dependency.check(), self.timeout_s)
        except Exception as exc:  # any failure means "down"
            state.healthy, state.error = False, f"{type(exc).__name__}: {exc}"[:200]
        else:
            state.healthy, state.error = True, ""
        state.latency_ms = (time.perf_counter() - start) * 1000
        return state

    async def probe_once(self) -> bool:
        """Probes every dependency and publishes the result; returns whether serving."""
        states = await asyncio.gather(*(self._probe(d) for d in self.dependencies))
        serving = all(s.healthy for s in states)
        if serving != self.serving:
            status = SERVING if serving else NOT_SERVING
            for name in ["", *self.services]:
                await self.servicer.set(name, status)
            down = [s.name for s in states if not s.healthy]
            log.log(
                logging.INFO if serving else logging.WARNING,
                "health changed",
                extra={"serving": serving, "down": down},
            )
            self.serving = serving
            for listener in self.listeners:
                await listener(serving)
        return serving

    async def run(self) -> None:
        """Probes forever."""
        while True:
            await self.probe_once()
            await asyncio.sleep(self.interval_s)

    async def shutdown(self) -> None:
        """Marks everything NOT_SERVING for the graceful stop."""
        await self.servicer.enter_graceful_shutdown()
