"""Pools (spec 05 §3): CRUD, membership, and the pool state.

A pool is FORMING until 3 of its members are active, then ACTIVE; once it has
been active, fewer than 3 active members make it DEGRADED. Adding a node to a
full pool (``max_nodes``, default 100) is RESOURCE_EXHAUSTED; names of pools are
unique, and node names are unique within a pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.nodes.callers import Caller, audit
from lucid.nodes.store import Doc, DuplicateError
from lucid.nodes.store.nodes import NodeRecord, NodeStore
from lucid.nodes.store.pools import PoolRecord, PoolStore
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import pool_pb2 as ppb
from lucid.runtime.audit import AuditTrail
from lucid.runtime.errors import ErrorCode, LucidError, not_found

DEFAULT_MAX_NODES = 100
DEFAULT_PRIORITY = 50
ACTIVE_MEMBERS = 3


@dataclass(frozen=True)
class PoolView:
    """A pool with its members and derived state."""

    pool: PoolRecord
    members: list[NodeRecord]
    state: int

    @property
    def active_count(self) -> int:
        """Members that are active."""
        return sum(1 for m in self.members if m.state == npb.NODE_STATE_ACTIVE)


def pool_state(pool: PoolRecord, members: list[NodeRecord], was_active: bool) -> int:
    """FORMING → ACTIVE at ≥ 3 active members; DEGRADED below that once it was active."""
    active = sum(1 for m in members if m.state == npb.NODE_STATE_ACTIVE)
    if active >= ACTIVE_MEMBERS:
        return ppb.POOL_STATE_ACTIVE
    return ppb.POOL_STATE_DEGRADED if was_active else ppb.POOL_STATE_FORMING


async def check_room(pools: PoolStore, nodes: NodeStore, pool_id: str) -> PoolRecord:
    """The pool a node is about to join: NOT_FOUND if missing, RESOURCE_EXHAUSTED if full."""
    pool = await pools.get(pool_id)
    if pool is None:
        raise not_found(f"pool {pool_id}")
    if await nodes.count_in_pool(pool_id) >= pool.max_nodes:
        raise LucidError(
            ErrorCode.ERROR_CODE_QUOTA_EXCEEDED, f"pool {pool_id} is full ({pool.max_nodes} nodes)"
        )
    return pool


class Pools:
    """The pool rules."""

    def __init__(self, pools: PoolStore, nodes: NodeStore, audit: AuditTrail, clock: Clock) -> None:
        self.pools = pools
        self.nodes = nodes
        self.audit = audit
        self.clock = clock

    async def view(self, pool: PoolRecord) -> PoolView:
        """A pool with its members and state (recording when it first became active)."""
        members = await self.nodes.in_pool(pool.pool_id)
        was_active = pool.activated_at is not None
        state = pool_state(pool, members, was_active)
        if state == ppb.POOL_STATE_ACTIVE and not was_active:
            pool = (
                await self.pools.update(pool.pool_id, {"activated_at": self.clock.now()})
            ) or pool
        return PoolView(pool, members, state)

    async def get(self, pool_id: str) -> PoolView:
        """A pool."""
        pool = await self.pools.get(pool_id)
        if pool is None:
            raise not_found(f"pool {pool_id}")
        return await self.view(pool)

    async def list(self, state: int, offset: int, limit: int) -> tuple[list[PoolView], int]:
        """A page of pools, optionally of one state."""
        if not state:
            pools, total = await self.pools.list(offset, limit)
            return [await self.view(p) for p in pools], total
        pools, _ = await self.pools.list(0, 10_000)
        views = [v for v in [await self.view(p) for p in pools] if v.state == state]
        return views[offset : offset + limit], len(views)

    async def create(self, fields: Doc, caller: Caller) -> PoolView:
        """A new pool."""
        now = self.clock.now()
        record = PoolRecord(
            pool_id=new_id(),
            name=fields["name"],
            max_nodes=fields.get("max_nodes") or DEFAULT_MAX_NODES,
            created_at=now,
            updated_at=now,
            description=fields.get("description", ""),
            reward_split=fields.get("reward_split") or ppb.REWARD_SPLIT_EQUAL,
            resource_limits=fields.get("resource_limits", {}),
            scaling_policy=fields.get("scaling_policy", {}),
        )
        try:
            await self.pools.insert(record)
        except DuplicateError:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"a pool named {record.name} exists"
            ) from None
        await audit(self.audit, caller, "pool.create", record.pool_id)
        return PoolView(record, [], ppb.POOL_STATE_FORMING)

    async def update(self, pool_id: str, changes: Doc, caller: Caller) -> PoolView:
        """Changes a pool; max_nodes may not go below its member count."""
        current = await self.get(pool_id)
        if "max_nodes" in changes and changes["max_nodes"] < len(current.members):
            raise LucidError(
                ErrorCode.ERROR_CODE_OUT_OF_RANGE,
                f"max_nodes {changes['max_nodes']} is below the {len(current.members)} members",
            )
        try:
            pool = await self.pools.update(pool_id, {**changes, "updated_at": self.clock.now()})
        except DuplicateError:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"a pool named {changes.get('name')} exists"
            ) from None
        if pool is None:
            raise not_found(f"pool {pool_id}")
        await audit(self.audit, caller, "pool.update", pool_id)
        return await self.view(pool)

    async def delete(self, pool_id: str, caller: Caller) -> None:
        """Removes an empty pool."""
        current = await self.get(pool_id)
        if current.members:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"pool {pool_id} still has {len(current.members)} nodes; remove them first",
            )
        await self.pools.delete(pool_id)
        await audit(self.audit, caller, "pool.delete", pool_id)

    async def add(
        self, pool_id: str, node_id: str, priority: int, caller: Caller
    ) -> tuple[PoolView, NodeRecord]:
        """Puts a node in a pool; RESOURCE_EXHAUSTED when it is full."""
        await check_room(self.pools, self.nodes, pool_id)
        node = await self.nodes.get(node_id)
        if node is None:
            raise not_found(f"node {node_id}")
        if node.pool_id == pool_id:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"node {node_id} is in the pool already"
            )
        if await self.nodes.name_taken(pool_id, node.name, node_id):
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"a node named {node.name} is already in the pool",
            )
        now = self.clock.now()
        member = await self.nodes.update(
            node_id,
            {
                "pool_id": pool_id,
                "pool_priority": priority or DEFAULT_PRIORITY,
                "pool_join_time": now,
                "updated_at": now,
            },
        )
        if member is None:
            raise not_found(f"node {node_id}")
        await audit(self.audit, caller, "pool.add_node", pool_id, details={"node_id": node_id})
        return await self.get(pool_id), member

    async def remove(self, pool_id: str, node_id: str, caller: Caller) -> PoolView:
        """Takes a node out of a pool."""
        await self.get(pool_id)
        updated = await self.nodes.update(
            node_id,
            {"pool_id": "", "pool_join_time": None, "updated_at": self.clock.now()},
            expect={"pool_id": pool_id},
        )
        if updated is None:
            raise not_found(f"node {node_id} in pool {pool_id}")
        await audit(self.audit, caller, "pool.remove_node", pool_id, details={"node_id": node_id})
        return await self.get(pool_id)
