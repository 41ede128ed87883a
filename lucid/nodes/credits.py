"""Work credits (spec 05 §4) from the task proofs the chain accepted.

Slots and epochs are the chain's (``lucid.blockchain`` spec 02 §4: 120 s task
slots from 2024-01-01 UTC, 720 slots an epoch), so a proof means the same slot
here and on the chain. Each proof counts in units of its task type, times the
spec 05 weight:

==================  ==========================  ======
task                unit                        weight
==================  ==========================  ======
relay_bandwidth     GB relayed (value / 1e9)    1.0
storage_proof       one per proof               0.5
validation_sig      signatures (value)          0.3
uptime_beacon       slots up (value s / 120)    0.1
==================  ==========================  ======

credits = Σ units x weight over the 7 days that end now (or at the end of the
asked epoch); live_score = min(1, beacons in the last 24 h / 720). Entities
(nodes, or pools) are ranked by credits, highest first (rank 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lucid.lib.clock import Clock
from lucid.lib.taskproofs import SLOT_S, epoch_end, epoch_of, slot_of
from lucid.nodes.callers import Caller
from lucid.nodes.store.nodes import NodeStore
from lucid.nodes.store.proofs import ProofStore, ProofSum
from lucid.nodes.v1 import poot_pb2 as ppb
from lucid.runtime.errors import invalid_argument, not_found

WINDOW = timedelta(days=7)
BEACONS_PER_DAY = 720
GB = 10**9

WEIGHTS: dict[int, float] = {
    ppb.TASK_TYPE_RELAY_BANDWIDTH: 1.0,
    ppb.TASK_TYPE_STORAGE_PROOF: 0.5,
    ppb.TASK_TYPE_VALIDATION_SIGNATURE: 0.3,
    ppb.TASK_TYPE_UPTIME_BEACON: 0.1,
}


def units(task_type: int, count: int, value: float) -> float:
    """The quantity a task type is weighted by (see the module table)."""
    if task_type == ppb.TASK_TYPE_RELAY_BANDWIDTH:
        return value / GB
    if task_type == ppb.TASK_TYPE_STORAGE_PROOF:
        return float(count)
    if task_type == ppb.TASK_TYPE_UPTIME_BEACON:
        return value / SLOT_S
    return value


@dataclass
class Credits:
    """One entity's credits over a window."""

    entity_id: str
    by_task: dict[int, tuple[float, float]] = field(default_factory=dict)
    """task type → (value, credits)."""
    rank: int = 0

    @property
    def total(self) -> float:
        """Σ credits."""
        return round(sum(c for _, c in self.by_task.values()), 6)


def tally(sums: Iterable[ProofSum]) -> dict[str, Credits]:
    """Credits per entity from per-task sums."""
    found: dict[str, Credits] = {}
    for row in sums:
        entry = found.setdefault(row.entity_id, Credits(row.entity_id))
        value, credit = entry.by_task.get(row.task_type, (0.0, 0.0))
        entry.by_task[row.task_type] = (
            value + row.value,
            credit + units(row.task_type, row.count, row.value) * WEIGHTS[row.task_type],
        )
    for rank, entry in enumerate(sorted(found.values(), key=lambda c: (-c.total, c.entity_id)), 1):
        entry.rank = rank
    return found


@dataclass(frozen=True)
class CreditReport:
    """GetWorkCredits' answer."""

    entity_id: str
    epoch: int
    credits: Credits
    live_score: float
    window_start: datetime
    window_end: datetime


class WorkCredits:
    """Credits per node or pool."""

    def __init__(self, proofs: ProofStore, nodes: NodeStore, clock: Clock) -> None:
        self.proofs = proofs
        self.nodes = nodes
        self.clock = clock

    async def report(
        self, *, node_id: str, pool_id: str, epoch: int | None, caller: Caller
    ) -> CreditReport:
        """A node's (the caller's own) or a pool's credits and rank in the window."""
        if not (node_id or pool_id):
            raise invalid_argument("node_id", "give a node_id or a pool_id")
        by_pool = not node_id
        if not by_pool:
            node = await self.nodes.get(node_id)
            if node is None or not caller.may_act_on(node.owner_user_id):
                raise not_found(f"node {node_id}")
        entity_id = pool_id if by_pool else node_id
        now = self.clock.now()
        end = min(now, epoch_end(epoch)) if epoch is not None else now
        start = end - WINDOW
        ranked = tally(await self.proofs.sums(start, end, by_pool=by_pool))
        mine = ranked.get(entity_id) or Credits(entity_id, rank=len(ranked) + 1)
        live = 0.0
        if not by_pool:
            beacons = await self.proofs.count(
                entity_id, ppb.TASK_TYPE_UPTIME_BEACON, end - timedelta(days=1), end
            )
            live = min(1.0, beacons / BEACONS_PER_DAY)
        return CreditReport(
            entity_id=entity_id,
            epoch=epoch if epoch is not None else epoch_of(slot_of(end)),
            credits=mine,
            live_score=live,
            window_start=start,
            window_end=end,
        )
