"""Traffic and security policies, circuit-breaker overrides, the mTLS settings and the
plane table as the policy rpcs show it (spec 10 §3)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from lucid.lib.clock import Clock
from lucid.mesh.identity import caller_name
from lucid.mesh.store import DuplicateError, MessageT
from lucid.mesh.store.policies import PolicyStore
from lucid.mesh.store.settings import Setting, SettingsStore
from lucid.mesh.v1 import policy_pb2
from lucid.runtime.context import Principal
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.runtime.planes import PlanePolicy
from lucid.runtime.wire import timestamp

TRAFFIC = "traffic"
SECURITY = "security"
BREAKER_KEY = "breaker:"
MTLS_KEY = "mtls"
DEFAULT_PRIORITY = 100


@dataclass(frozen=True)
class PlaneView:
    """What GetPlanePolicy shows besides the table itself."""

    version: int
    breakers: list[policy_pb2.CircuitBreaker]
    mtls: Setting | None


class Policies:
    """Creates, lists and deletes policies; stores breaker and mTLS settings."""

    def __init__(
        self, policies: PolicyStore, settings: SettingsStore, plane: PlanePolicy, clock: Clock
    ) -> None:
        self.policies = policies
        self.settings = settings
        self.plane = plane
        self.clock = clock

    async def create(
        self, kind: str, request: Any, cls: type[MessageT], caller: Principal
    ) -> MessageT:
        """A new traffic or security policy; ALREADY_EXISTS for a taken name."""
        policy = cls(
            policy_id=str(uuid.uuid4()),
            name=request.name,
            description=request.description,
            source=request.source,
            destination=request.destination,
            rules=request.rules,
            priority=request.priority or DEFAULT_PRIORITY,
            enabled=request.enabled,
            namespace=request.namespace or "default",
            create_time=timestamp(self.clock.timestamp()),
            created_by=caller_name(caller),
        )
        try:
            await self.policies.insert(kind, policy)
        except DuplicateError:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"a policy named {request.name} exists"
            ) from None
        return policy

    async def page(
        self, kind: str, cls: type[MessageT], *, enabled_only: bool, offset: int, limit: int
    ) -> tuple[list[MessageT], int]:
        """A page of one kind's policies, highest priority first, and how many there are."""
        return await self.policies.page(
            kind, cls, enabled_only=enabled_only, offset=offset, limit=limit
        )

    async def delete(self, kind: str, policy_id: str) -> None:
        """Removes a policy; NOT_FOUND if there is none."""
        if not await self.policies.delete(kind, policy_id):
            raise not_found(f"{kind} policy {policy_id}")

    async def update_breaker(
        self, service_name: str, config: policy_pb2.CircuitBreakerConfig, caller: Principal
    ) -> policy_pb2.CircuitBreaker:
        """Stores a service's circuit-breaker override."""
        now = self.clock.timestamp()
        breaker = policy_pb2.CircuitBreaker(
            service_name=service_name,
            config=config,
            update_time=timestamp(now),
            updated_by=caller_name(caller),
        )
        await self.settings.put(BREAKER_KEY + service_name, breaker, now)
        return breaker

    async def update_mtls(self, config: policy_pb2.MtlsConfig) -> float:
        """Stores the mTLS settings; returns when (epoch seconds)."""
        now = self.clock.timestamp()
        await self.settings.put(MTLS_KEY, config, now)
        return now

    async def plane_view(self) -> PlaneView:
        """The table's version with every settings change, the overrides, the mTLS settings."""
        return PlaneView(
            version=self.plane.version + await self.settings.version(),
            breakers=await self.settings.prefixed(BREAKER_KEY, policy_pb2.CircuitBreaker),
            mtls=await self.settings.get(MTLS_KEY, policy_pb2.MtlsConfig),
        )
