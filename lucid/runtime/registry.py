"""The service registry interface, and the static registry (the port map).

Servers register themselves when they start and deregister when they stop;
clients resolve a cluster name to endpoints. On one machine the static registry
answers from the configured port map; a Consul backend plugs in behind the same
interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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


@dataclass(frozen=True)
class Endpoint:
    """Where to reach a cluster."""

    host: str
    port: int

    @property
    def target(self) -> str:
        """``host:port`` for a gRPC channel."""
        return f"{self.host}:{self.port}"


class Registry(Protocol):
    """Registration and discovery."""

    async def register(self, instance: Instance) -> None:
        """Announces a running server."""
        ...

    async def deregister(self, instance: Instance) -> None:
        """Withdraws a server that is stopping."""
        ...

    async def resolve(self, cluster: str) -> list[Endpoint]:
        """The healthy endpoints of a cluster (empty when none)."""
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


def create_registry(settings: Settings) -> Registry:
    """The registry the settings name."""
    if settings.registry == "static":
        return StaticRegistry(settings)
    raise ValueError(f"unknown registry backend {settings.registry!r}")
