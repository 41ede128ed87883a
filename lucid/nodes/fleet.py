"""Nodes: reading, updating and deleting them, their lifecycle, heartbeats and fleet health.

Lifecycle (spec 05 §3): inactive → starting → active → stopping → inactive. Start
probes the node agent; a node whose agent does not answer ends in ``error``.
Start on an active node answers "already active" (not an error); from any state
but inactive it is FAILED_PRECONDITION. A heartbeat under 300 s old (the node's
threshold, default 300) is healthy; the fleet is healthy when ≥ 80 % of nodes
are, degraded at ≥ 50 %. Operators see and change only their own nodes (others'
are NOT_FOUND); admins and the admin console see all. Every change is audited.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from lucid.lib.clock import Clock
from lucid.nodes.alerts import Alerts
from lucid.nodes.callers import Caller, audit
from lucid.nodes.pools import check_room
from lucid.nodes.reachability import Prober
from lucid.nodes.store import Doc, DuplicateError
from lucid.nodes.store.metrics import MetricStore, SampleRecord
from lucid.nodes.store.nodes import NodeQuery, NodeRecord, NodeStore
from lucid.nodes.store.pools import PoolStore
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.runtime.audit import AuditTrail
from lucid.runtime.errors import ErrorCode, LucidError, not_found

INACTIVE = npb.NODE_STATE_INACTIVE
STARTING = npb.NODE_STATE_STARTING
ACTIVE = npb.NODE_STATE_ACTIVE
STOPPING = npb.NODE_STATE_STOPPING
MAINTENANCE = npb.NODE_STATE_MAINTENANCE
ERROR = npb.NODE_STATE_ERROR

HEARTBEAT_TIMEOUT_S = 300
DEFAULT_THRESHOLD_PERCENT = 95.0
HEARTBEAT_INTERVAL_S = 30
HEALTHY_SHARE = 0.8
DEGRADED_SHARE = 0.5


def heartbeat_timeout(node: NodeRecord) -> int:
    """Seconds after which a node's heartbeat is stale (its threshold, default 300)."""
    return int(node.thresholds.get("heartbeat_timeout_seconds") or HEARTBEAT_TIMEOUT_S)


def is_healthy(node: NodeRecord, now: datetime) -> bool:
    """An active node whose last heartbeat is fresh."""
    return (
        node.state == ACTIVE
        and node.last_heartbeat is not None
        and now - node.last_heartbeat < timedelta(seconds=heartbeat_timeout(node))
    )


@dataclass(frozen=True)
class ActionResult:
    """The outcome of start, stop or restart."""

    node: NodeRecord
    message: str
    unchanged: bool = False


@dataclass(frozen=True)
class FleetStatus:
    """Nodes per state, how many are healthy, and the verdict."""

    total: int
    healthy: int
    by_state: dict[int, int]
    health: int
    load_average: float


def fleet_health(total: int, healthy: int) -> int:
    """HEALTHY at ≥ 80 % healthy, DEGRADED at ≥ 50 %, else UNHEALTHY (an empty fleet is healthy)."""
    share = healthy / total if total else 1.0
    if share >= HEALTHY_SHARE:
        return npb.FLEET_HEALTH_HEALTHY
    if share >= DEGRADED_SHARE:
        return npb.FLEET_HEALTH_DEGRADED
    return npb.FLEET_HEALTH_UNHEALTHY


class Fleet:
    """The node rules."""

    def __init__(  # noqa: PLR0917 (wiring: every collaborator once)
        self,
        nodes: NodeStore,
        metrics: MetricStore,
        audit: AuditTrail,
        prober: Prober,
        clock: Clock,
        alerts: Alerts,
        pools: PoolStore,
    ) -> None:
        self.alerts = alerts
        self.pools = pools
        self.nodes = nodes
        self.metrics = metrics
        self.audit = audit
        self.prober = prober
        self.clock = clock

    async def get(self, node_id: str, caller: Caller) -> NodeRecord:
        """A node the caller may see."""
        node = await self.nodes.get(node_id)
        if node is None or not caller.may_act_on(node.owner_user_id):
            raise not_found(f"node {node_id}")
        return node

    async def list(
        self, query: NodeQuery, caller: Caller, offset: int, limit: int
    ) -> tuple[list[NodeRecord], int]:
        """A page of the nodes the caller may see."""
        if not caller.may_act_on(query.owner_user_id or "\0"):
            query = replace(query, owner_user_id=caller.user_id)
        return await self.nodes.page(query, offset, limit)

    async def update(
        self, node_id: str, changes: Doc, caller: Caller, reason: str = ""
    ) -> NodeRecord:
        """Changes name, type, pool, configuration or state (active, inactive,
        maintenance, error)."""
        node = await self.get(node_id, caller)
        name = changes.get("name", node.name)
        pool_id = changes.get("pool_id", node.pool_id)
        if pool_id != node.pool_id:
            await check_room(self.pools, self.nodes, pool_id)
            changes = {**changes, "pool_join_time": self.clock.now()}
        if (name, pool_id) != (node.name, node.pool_id) and await self.nodes.name_taken(
            pool_id, name, node_id
        ):
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"a node named {name} is already in the pool"
            )
        changes = {**changes, "updated_at": self.clock.now()}
        if changes.get("state") == ERROR:
            changes.setdefault("error_message", reason or "set by an operator")
        elif "state" in changes:
            changes["error_message"] = ""
        try:
            updated = await self.nodes.update(node_id, changes)
        except DuplicateError:
            raise LucidError(ErrorCode.ERROR_CODE_ALREADY_EXISTS, "the node exists") from None
        if updated is None:
            raise not_found(f"node {node_id}")
        await audit(
            self.audit,
            caller,
            "node.update",
            node_id,
            details={"fields": ",".join(sorted(changes)), "reason": reason},
        )
        return updated

    async def delete(self, node_id: str, caller: Caller) -> None:
        """Removes a node (it leaves its pool; its PoOT and proof history stay)."""
        await self.get(node_id, caller)
        await self.nodes.delete(node_id)
        await audit(self.audit, caller, "node.delete", node_id)

    async def start(self, node_id: str, caller: Caller) -> ActionResult:
        """inactive → starting → (agent answers) → active; else → error."""
        node = await self.get(node_id, caller)
        if node.state == ACTIVE:
            return ActionResult(node, "already active", unchanged=True)
        now = self.clock.now()
        starting = await self.nodes.update(
            node_id, {"state": STARTING, "updated_at": now}, expect={"state": INACTIVE}
        )
        if starting is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"node {node_id} is {npb.NodeState.Name(node.state)}; only an inactive node starts",  # type: ignore[arg-type]
            )
        if not await self.prober.reachable(node.port):
            failed = await self._set(
                node_id,
                {
                    "state": ERROR,
                    "error_message": f"the node agent on port {node.port} did not answer",
                },
            )
            await audit(self.audit, caller, "node.start", node_id, failed=failed.error_message)
            return ActionResult(failed, failed.error_message)
        now = self.clock.now()
        active = await self._set(
            node_id,
            {"state": ACTIVE, "start_time": now, "last_heartbeat": now, "error_message": ""},
        )
        await audit(self.audit, caller, "node.start", node_id)
        return ActionResult(active, "started")

    async def stop(self, node_id: str, caller: Caller) -> ActionResult:
        """active (or maintenance) → stopping → inactive."""
        node = await self.get(node_id, caller)
        if node.state == INACTIVE:
            return ActionResult(node, "already inactive", unchanged=True)
        stopping = await self.nodes.update(
            node_id,
            {"state": STOPPING, "updated_at": self.clock.now()},
            expect={"state": {"$in": [ACTIVE, MAINTENANCE]}},
        )
        if stopping is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"node {node_id} is {npb.NodeState.Name(node.state)}; only an active node stops",  # type: ignore[arg-type]
            )
        stopped = await self._set(node_id, {"state": INACTIVE, "stop_time": self.clock.now()})
        await audit(self.audit, caller, "node.stop", node_id)
        return ActionResult(stopped, "stopped")

    async def restart(self, node_id: str, caller: Caller) -> ActionResult:
        """Stop, then start."""
        node = await self.get(node_id, caller)
        if node.state != INACTIVE:
            await self.stop(node_id, caller)
        result = await self.start(node_id, caller)
        return replace(result, message=f"restarted: {result.message}", unchanged=False)

    async def heartbeat(
        self, node_id: str, sample: SampleRecord | None, caller: Caller
    ) -> NodeRecord:
        """Records a heartbeat and, if given, a resource sample."""
        await self.get(node_id, caller)
        now = self.clock.now()
        node = await self._set(node_id, {"last_heartbeat": now})
        if sample is not None:
            await self.metrics.append(replace(sample, node_id=node_id, sample_time=now))
            over = {
                name: value
                for name, value in (
                    ("cpu_percent", sample.cpu_percent),
                    ("memory_percent", sample.memory_percent),
                )
                if value > float(node.thresholds.get(name) or DEFAULT_THRESHOLD_PERCENT)
            }
            if over:
                await self.alerts.raise_alert("resources", node_id, caller, over)
        return node

    async def status(self) -> FleetStatus:
        """The fleet summary."""
        nodes = await self.nodes.all()
        now = self.clock.now()
        by_state: dict[int, int] = {}
        for node in nodes:
            by_state[node.state] = by_state.get(node.state, 0) + 1
        healthy = sum(1 for n in nodes if is_healthy(n, now))
        loads = [s.load_average for s in [await self.metrics.latest(n.node_id) for n in nodes] if s]
        return FleetStatus(
            total=len(nodes),
            healthy=healthy,
            by_state=by_state,
            health=fleet_health(len(nodes), healthy),
            load_average=sum(loads) / len(loads) if loads else 0.0,
        )

    async def _set(self, node_id: str, changes: dict[str, Any]) -> NodeRecord:
        updated = await self.nodes.update(node_id, {**changes, "updated_at": self.clock.now()})
        if updated is None:
            raise not_found(f"node {node_id}")
        return updated
