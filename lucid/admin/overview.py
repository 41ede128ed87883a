"""The dashboard's overview and detailed health, aggregated from the mesh.

Each cluster's gRPC health check (1 s timeout) makes the dependency list; the overall
status is the worst of them: a core cluster (auth, sessions, blockchain) down is
critical, any other down is a warning, CPU or memory above 80 % is a warning
(memory above 90 % critical). Sessions are counted from the sessions cluster as the
calling administrator; nodes from the nodes cluster's fleet status (no summary while it
does not answer); the chain from its GetChainStatus; resources from this host.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import psutil

from lucid.admin.clusters import ChainView
from lucid.admin.nodes_link import FleetView
from lucid.admin.session_views import SessionViews, console_state
from lucid.lib.clock import Clock
from lucid.runtime.errors import ErrorCode, LucidError

HEALTHY, WARNING, CRITICAL = "healthy", "warning", "critical"
CORE = frozenset({"auth", "sessions", "blockchain"})
RANK = {HEALTHY: 0, WARNING: 1, CRITICAL: 2}


class Fleet(Protocol):
    """The nodes cluster's fleet status, as the administrator."""

    async def fleet(self, token: str) -> FleetView | None:
        """Node counts, or None if the nodes cluster does not answer."""


class Recorder(Protocol):
    """Keeps what each overview saw (the metric history)."""

    async def record(self, view: Overview) -> None:
        """Stores one overview's figures."""


class MeshProbe(Protocol):
    """Health checks and chain status."""

    async def serving(self, cluster: str) -> str:
        """An empty string when the cluster serves, else why not."""

    async def chain(self) -> ChainView | None:
        """The chain's status, if it answers."""


@dataclass(frozen=True)
class Dependency:
    """One cluster's health."""

    name: str
    status: str
    latency_ms: int
    message: str
    checked_at: datetime


@dataclass(frozen=True)
class Resources:
    """This host's resource use."""

    cpu_percent: float
    memory_percent: float
    disk_percent: float
    network_in_bytes: int
    network_out_bytes: int


@dataclass(frozen=True)
class Health:
    """The overall status and each dependency."""

    status: str
    uptime_s: int
    version: str
    checked_at: datetime
    resources: Resources
    dependencies: list[Dependency] = field(default_factory=list)


@dataclass(frozen=True)
class Overview:
    """The five sections of the dashboard."""

    health: Health
    sessions_active: int
    sessions_idle: int
    chain: ChainView | None
    nodes: FleetView | None = None


def resources(disk_path: Path) -> Resources:
    """CPU (since the last call), memory, disk of the data volume, network counters."""
    net = psutil.net_io_counters()
    return Resources(
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_percent=psutil.virtual_memory().percent,
        disk_percent=psutil.disk_usage(str(disk_path)).percent,
        network_in_bytes=net.bytes_recv,
        network_out_bytes=net.bytes_sent,
    )


def version() -> str:
    """The installed Lucid version."""
    try:
        return importlib.metadata.version("lucid")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


class Dashboard:
    """Overview and health."""

    def __init__(
        self,
        probe: MeshProbe,
        sessions: SessionViews,
        *,
        fleet: Fleet,
        recorder: Recorder | None = None,
        clusters: tuple[str, ...],
        disk_path: Path,
        clock: Clock,
    ) -> None:
        self.probe = probe
        self.sessions = sessions
        self.fleet = fleet
        self.recorder = recorder
        self.clusters = clusters
        self.disk_path = disk_path
        self.clock = clock
        self.started = clock.now()

    async def _check(self, cluster: str) -> Dependency:
        began = time.perf_counter()
        why = await self.probe.serving(cluster)
        latency = int((time.perf_counter() - began) * 1000)
        status = HEALTHY if not why else (CRITICAL if cluster in CORE else WARNING)
        return Dependency(cluster, status, latency, why or "serving", self.clock.now())

    async def health(self) -> Health:
        """Every dependency checked at once, and the worst of them with the host's load."""
        deps = list(await asyncio.gather(*(self._check(c) for c in self.clusters)))
        used = await asyncio.to_thread(resources, self.disk_path)
        load = HEALTHY
        if used.memory_percent > 90:
            load = CRITICAL
        elif used.cpu_percent > 80 or used.memory_percent > 80:
            load = WARNING
        status = max([load, *(d.status for d in deps)], key=RANK.__getitem__)
        uptime = int((self.clock.now() - self.started).total_seconds())
        return Health(status, uptime, version(), self.clock.now(), used, deps)

    async def chain(self) -> ChainView:
        """The chain's status, or CHAIN_UNAVAILABLE."""
        found = await self.probe.chain()
        if found is None:
            raise LucidError(ErrorCode.ERROR_CODE_CHAIN_UNAVAILABLE, "the chain does not answer")
        return found

    async def overview(self, token: str) -> Overview:
        """Health, live sessions, nodes, chain (recorded in the metric history)."""
        health, chain, nodes = await asyncio.gather(
            self.health(), self.probe.chain(), self.fleet.fleet(token)
        )
        views, _ = await self.sessions.page("", "", 0, 10_000, token)
        states = [console_state(v) for v in views]
        view = Overview(health, states.count("active"), states.count("idle"), chain, nodes)
        if self.recorder is not None:
            await self.recorder.record(view)
        return view
