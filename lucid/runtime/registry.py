"""The service registry: one interface, two backends (the port map and Consul).

Servers register themselves when they start (name, id, address, port, tags
``cluster:``, ``plane:``, ``version:``, a gRPC health check) and deregister when
they stop; clients resolve a cluster name to the endpoints of its *passing*
instances, and the channel layer balances calls round-robin across them.

- ``StaticRegistry`` (the default on one machine): the configured port map;
  registrations are recorded only, and nothing is health-checked.
- ``ConsulRegistry``: a Consul agent through py-consul. Each instance carries a
  gRPC health check over mTLS (``grpc_use_tls``, the cluster's DNS name as TLS
  server name; the agent presents a client certificate from the Lucid CA, see
  ``consul_agent_tls``), so an instance whose ``grpc.health.v1`` says NOT_SERVING
  drops out of discovery and comes back when it recovers.
"""

from __future__ import annotations

import ipaddress
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import consul.aio

from lucid.runtime import tls
from lucid.runtime.config import Settings


@dataclass(frozen=True)
class Instance:
    """One running server of a cluster."""

    cluster: str
    instance_id: str
    host: str
    port: int
    plane: str
    version: str
    tags: tuple[str, ...] = field(default=())
    metrics_port: int = 0
    """Where its Prometheus ``/metrics`` listens (0: not served)."""

    @property
    def endpoint(self) -> Endpoint:
        """Where it listens."""
        return Endpoint(self.host, self.port)


@dataclass(frozen=True, order=True)
class Endpoint:
    """Where to reach a cluster."""

    host: str
    port: int

    @property
    def target(self) -> str:
        """``host:port`` for a gRPC channel."""
        return f"{self.host}:{self.port}"


def channel_target(endpoints: Sequence[Endpoint]) -> str:
    """One gRPC target for several endpoints: ``ipv4:a:1,b:2`` (``round_robin`` spreads
    calls across them). Host names cannot be listed, so a set holding one dials its
    first endpoint."""
    ordered = sorted(set(endpoints))
    if len(ordered) == 1:
        return ordered[0].target
    try:
        addresses = [ipaddress.ip_address(e.host) for e in ordered]
    except ValueError:
        return ordered[0].target
    if all(a.version == 4 for a in addresses):
        return "ipv4:" + ",".join(e.target for e in ordered)
    if all(a.version == 6 for a in addresses):
        return "ipv6:" + ",".join(f"[{e.host}]:{e.port}" for e in ordered)
    return ordered[0].target


class Registry(Protocol):
    """Registration and discovery."""

    async def register(self, instance: Instance) -> None:
        """Announces a running server."""
        ...

    async def deregister(self, instance: Instance) -> None:
        """Withdraws a server that is stopping."""
        ...

    async def resolve(self, cluster: str) -> list[Endpoint]:
        """The endpoints of a cluster's passing instances, sorted (empty when none)."""
        ...

    async def close(self) -> None:
        """Releases the backend's connections."""
        ...


class StaticRegistry:
    """Resolves clusters from the configured port map; registration is recorded only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instances: dict[str, Instance] = {}

    async def register(self, instance: Instance) -> None:
        self.instances[instance.instance_id] = instance

    async def deregister(self, instance: Instance) -> None:
        self.instances.pop(instance.instance_id, None)

    async def resolve(self, cluster: str) -> list[Endpoint]:
        port = self.settings.ports.get(cluster)
        return [Endpoint(self.settings.host, port)] if port else []

    async def close(self) -> None:
        return None


def grpc_check(settings: Settings, instance: Instance) -> dict[str, Any]:
    """The Consul check of an instance: ``grpc.health.v1`` over mTLS."""
    return {
        "CheckID": f"service:{instance.instance_id}",
        "Name": f"{instance.cluster} gRPC health",
        "GRPC": instance.endpoint.target,
        "GRPCUseTLS": True,
        "TLSServerName": tls.dns_name(instance.cluster),
        "Interval": f"{settings.consul_check_interval_s:g}s",
        "Timeout": f"{settings.consul_check_timeout_s:g}s",
        "DeregisterCriticalServiceAfter": f"{settings.consul_deregister_after_s:g}s",
    }


def service_meta(instance: Instance) -> dict[str, str]:
    """The meta of a registration, matching its tags, and its ``/metrics`` port (what a
    Prometheus ``consul_sd_config`` relabels to the scrape address)."""
    meta = {"cluster": instance.cluster, "plane": instance.plane, "version": instance.version}
    if instance.metrics_port:
        meta["metrics_port"] = str(instance.metrics_port)
    return meta


class ConsulRegistry:
    """A Consul agent (py-consul's asyncio client); passing instances only."""

    def __init__(self, settings: Settings) -> None:
        host, _, port = settings.consul_addr.rpartition(":")
        self.settings = settings
        with warnings.catch_warnings():  # py-consul passes aiohttp a deprecated argument
            warnings.simplefilter("ignore", DeprecationWarning)
            # Plain HTTP to the node-local agent (verify only matters for https).
            self.client = consul.aio.Consul(host=host or "127.0.0.1", port=int(port), verify=False)
        self._cache: dict[str, tuple[float, list[Endpoint]]] = {}

    async def register(self, instance: Instance) -> None:
        await self.client.agent.service.register(
            instance.cluster,
            service_id=instance.instance_id,
            address=instance.host,
            port=instance.port,
            tags=list(instance.tags),
            meta=service_meta(instance),
            check=grpc_check(self.settings, instance),
        )
        self._cache.pop(instance.cluster, None)

    async def deregister(self, instance: Instance) -> None:
        await self.client.agent.service.deregister(instance.instance_id)
        self._cache.pop(instance.cluster, None)

    async def instances(self, cluster: str) -> list[Mapping[str, Any]]:
        """The passing instances of a cluster as Consul describes them."""
        _, nodes = await self.client.health.service(cluster, passing=True)
        return [node["Service"] for node in nodes]

    async def resolve(self, cluster: str) -> list[Endpoint]:
        now = time.monotonic()
        cached = self._cache.get(cluster)
        if cached and now - cached[0] < self.settings.consul_cache_s:
            return cached[1]
        endpoints = sorted(
            {Endpoint(s["Address"], int(s["Port"])) for s in await self.instances(cluster)}
        )
        self._cache[cluster] = (now, endpoints)
        return endpoints

    async def close(self) -> None:
        await self.client.close()


def create_registry(settings: Settings) -> Registry:
    """The registry the settings name."""
    if settings.registry == "static":
        return StaticRegistry(settings)
    if settings.registry == "consul":
        return ConsulRegistry(settings)
    raise ValueError(f"unknown registry backend {settings.registry!r}")
