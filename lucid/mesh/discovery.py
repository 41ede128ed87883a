"""The in-repo registry (spec 10 §3, §4), for setups without Consul: who may
register what, the health state machine, how one healthy instance is picked, and
``Registry``, the service the discovery rpcs call.

Health: a critical report counts a failure; ``failure_threshold`` (3) in a row make
the instance unhealthy, and ``success_threshold`` (1) passing report makes it
healthy again; a warning makes it degraded (still resolvable). An instance with
no report yet is ``unknown`` and resolvable, so a fresh registration resolves at
once. Registrations expire ``ttl_seconds`` after the last heartbeat, and an
instance critical for longer than 90 s is deregistered.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock
from lucid.mesh.store import DuplicateError
from lucid.mesh.store.registry import Registration, RegistryStore, ServiceQuery
from lucid.mesh.v1 import discovery_pb2, policy_pb2
from lucid.runtime.context import Principal
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError, not_found
from lucid.runtime.identity import cluster_from_enum, cluster_planes
from lucid.runtime.wire import timestamp

DEFAULT_TTL_S = 300
DEFAULT_WEIGHT = 100
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_SUCCESS_THRESHOLD = 1
CRITICAL_DEREGISTER_S = 90

RESOLVABLE = (
    discovery_pb2.INSTANCE_STATUS_UNKNOWN,
    discovery_pb2.INSTANCE_STATUS_HEALTHY,
    discovery_pb2.INSTANCE_STATUS_DEGRADED,
)


def plane_of(cluster: int) -> int:
    """The plane enum value a cluster enum value belongs to."""
    name = cluster_planes()[cluster_from_enum(cluster)]
    return int(access_pb2.Plane.Value(f"PLANE_{name.upper()}"))


def may_act_for(principal: Principal, cluster: int) -> bool:
    """A service acts only for its own cluster; a super admin for any."""
    if principal.peer.is_cluster and principal.peer.name == cluster_from_enum(cluster):
        return True
    user = principal.user
    return bool(user and user.role >= access_pb2.ROLE_SUPER_ADMIN)


def check_registration(request: discovery_pb2.RegisterServiceRequest, principal: Principal) -> None:
    """Refuses a registration whose plane is not its cluster's, or another cluster's."""
    if plane_of(request.cluster) != request.plane:
        expected = access_pb2.Plane.Name(plane_of(request.cluster))  # type: ignore[arg-type]
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            f"cluster {cluster_from_enum(request.cluster)} is in plane {expected}",
            field_violations=[FieldViolation("plane", f"must be {expected}")],
        )
    if not may_act_for(principal, request.cluster):
        raise LucidError(
            ErrorCode.ERROR_CODE_PERMISSION_DENIED,
            f"{principal.peer.name} may register only its own cluster",
        )


@dataclass(frozen=True)
class Thresholds:
    """When reports change an instance's status."""

    failures: int
    successes: int

    @classmethod
    def of(cls, check: discovery_pb2.HealthCheckConfig) -> Thresholds:
        """The thresholds of a check config (zero fields take the defaults)."""
        return cls(
            check.failure_threshold or DEFAULT_FAILURE_THRESHOLD,
            check.success_threshold or DEFAULT_SUCCESS_THRESHOLD,
        )


def apply_report(
    health: discovery_pb2.InstanceHealth,
    thresholds: Thresholds,
    report: int,
    *,
    now_s: float,
) -> None:
    """Moves ``health`` by one check result (a ``CheckStatus``), in place."""
    health.last_check = report  # type: ignore[assignment]
    health.last_check_time.CopyFrom(timestamp(now_s))
    if report == discovery_pb2.CHECK_STATUS_CRITICAL:
        health.consecutive_failures += 1
        health.consecutive_successes = 0
        if not health.HasField("critical_since_time"):
            health.critical_since_time.CopyFrom(timestamp(now_s))
        if health.consecutive_failures >= thresholds.failures:
            health.status = discovery_pb2.INSTANCE_STATUS_UNHEALTHY
        return
    health.ClearField("critical_since_time")
    health.consecutive_failures = 0
    if report == discovery_pb2.CHECK_STATUS_WARNING:
        health.consecutive_successes = 0
        health.status = discovery_pb2.INSTANCE_STATUS_DEGRADED
        return
    health.consecutive_successes += 1
    if (
        health.status != discovery_pb2.INSTANCE_STATUS_UNHEALTHY
        or health.consecutive_successes >= thresholds.successes
    ):
        health.status = discovery_pb2.INSTANCE_STATUS_HEALTHY


def pick(
    instances: Sequence[discovery_pb2.ServiceInstance],
    method: int,
    *,
    turn: int,
    hash_key: str = "",
) -> discovery_pb2.ServiceInstance:
    """One instance by the load-balancing method; ``turn`` is the round-robin counter."""
    ordered = sorted(instances, key=lambda i: i.service_id)
    if method in (policy_pb2.LOAD_BALANCE_UNSPECIFIED, policy_pb2.LOAD_BALANCE_ROUND_ROBIN):
        return ordered[turn % len(ordered)]
    if method == policy_pb2.LOAD_BALANCE_RANDOM:
        return random.choice(ordered)  # noqa: S311 (spreading load, not secrecy)
    if method == policy_pb2.LOAD_BALANCE_WEIGHTED:
        weights = [i.weight or DEFAULT_WEIGHT for i in ordered]
        return random.choices(ordered, weights=weights)[0]  # noqa: S311
    if method == policy_pb2.LOAD_BALANCE_CONSISTENT_HASH:
        if not hash_key:
            raise LucidError(
                ErrorCode.ERROR_CODE_MISSING_FIELD,
                "consistent hashing needs a hash_key",
                field_violations=[FieldViolation("hash_key", "required for consistent hashing")],
            )
        digest = hashlib.sha256(hash_key.encode()).digest()
        return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]
    raise LucidError(
        ErrorCode.ERROR_CODE_NOT_ALLOWED,
        "least-connections needs connection counts the registry does not keep; "
        "use round-robin, random, weighted or consistent-hash",
    )


REPORT_RETRIES = 5
"""Optimistic concurrency: a health report that raced another is applied again."""


class Registry:
    """Registers, reports on, lists, resolves and sweeps service instances."""

    def __init__(self, store: RegistryStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def register(
        self, request: discovery_pb2.RegisterServiceRequest, caller: Principal
    ) -> discovery_pb2.ServiceInstance:
        """A new registration of the caller's own cluster; ALREADY_EXISTS for a known id."""
        check_registration(request, caller)
        now = self.clock.timestamp()
        ttl = request.ttl_seconds or DEFAULT_TTL_S
        instance = discovery_pb2.ServiceInstance(
            service_id=request.service_id,
            instance_id=f"{request.service_name}-{request.service_id[:8]}",
            service_name=request.service_name,
            cluster=request.cluster,
            plane=request.plane,
            endpoint=request.endpoint,
            version=request.version,
            health_check=request.health_check,
            metadata=request.metadata,
            ttl_seconds=ttl,
            weight=request.weight or DEFAULT_WEIGHT,
            health=discovery_pb2.InstanceHealth(status=discovery_pb2.INSTANCE_STATUS_UNKNOWN),
            register_time=timestamp(now),
            expire_time=timestamp(now + ttl),
        )
        try:
            await self.store.insert(instance, now=now, expire=now + ttl)
        except DuplicateError:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"service {request.service_id} is already registered",
            ) from None
        return instance

    async def _owned(self, service_id: str, caller: Principal) -> Registration:
        found = await self.store.get(service_id)
        if found is None:
            raise not_found(f"service {service_id}")
        if not may_act_for(caller, found.cluster):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                f"service {service_id} belongs to {cluster_from_enum(found.cluster)}",
            )
        return found

    async def deregister(self, service_id: str, caller: Principal) -> None:
        """Removes one of the caller's cluster's instances."""
        await self._owned(service_id, caller)
        await self.store.delete(service_id)

    async def report_health(
        self, service_id: str, status: int, output: str, response_time_ms: int, caller: Principal
    ) -> discovery_pb2.ServiceInstance:
        """Applies one health report (a heartbeat: the registration lives another TTL)."""
        for _ in range(REPORT_RETRIES):
            found = await self._owned(service_id, caller)
            instance = found.instance
            now = self.clock.timestamp()
            apply_report(instance.health, Thresholds.of(instance.health_check), status, now_s=now)
            instance.health.output = output
            instance.health.response_time_ms = response_time_ms
            expire = now + instance.ttl_seconds
            instance.expire_time.CopyFrom(timestamp(expire))
            if await self.store.replace_if_revision(found, instance, now=now, expire=expire):
                return instance
        raise LucidError(ErrorCode.ERROR_CODE_TRANSACTION_FAILED, "concurrent health reports")

    async def live(self, where: ServiceQuery) -> list[discovery_pb2.ServiceInstance]:
        """The unexpired instances matching ``where``."""
        return [r.instance for r in await self.store.live(where, self.clock.timestamp())]

    async def resolve(
        self, service_name: str, version: str, method: int, hash_key: str
    ) -> tuple[discovery_pb2.ServiceInstance, int]:
        """One healthy instance by the load-balancing method, and how many are healthy."""
        found = await self.live(ServiceQuery(service_name=service_name, version=version))
        if not found:
            raise not_found(f"service {service_name}")
        healthy = [i for i in found if i.health.status in RESOLVABLE]
        if not healthy:
            raise LucidError(
                ErrorCode.ERROR_CODE_MESH_NO_HEALTHY_INSTANCE,
                f"no healthy instance of {service_name}",
            )
        turn = await self.store.next_turn(service_name)
        return pick(healthy, method, turn=turn, hash_key=hash_key), len(healthy)

    async def sweep(self) -> int:
        """Deregisters instances critical for longer than 90 s."""
        return await self.store.delete_critical_since(
            self.clock.timestamp() - CRITICAL_DEREGISTER_S
        )
