"""The epoch's payout run: what each node is owed for a finished epoch, as one batch.

For epoch e (the chain's: 720 task slots), the credits are those of the 7 days
ending at e's end; only nodes whose latest scored PoOT validation is valid share
the schedule's epoch budget (``owed``), a pool's share split among its members by
the pool's mode (equal, contribution-weighted or work credits; ``owed.pooled``).
What is under the minimum payout (10 USDT) is carried into the schedule document
for the next run; the rest becomes a payout batch to each node's own TRON address,
with the id derived from the epoch, so an epoch is paid once: a second run
answers the first one's batch. While the schedule is enabled the cluster runs each
finished epoch once (``due``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from lucid.lib import taskproofs
from lucid.lib.clock import Clock
from lucid.nodes import credits, owed
from lucid.nodes.callers import Caller
from lucid.nodes.payouts import BatchView, PayoutItem, Payouts, address_problem
from lucid.nodes.schedule import Schedule
from lucid.nodes.store.nodes import NodeRecord, NodeStore
from lucid.nodes.store.pools import PoolStore
from lucid.nodes.store.proofs import ProofStore
from lucid.nodes.v1 import payout_pb2 as ypb
from lucid.nodes.v1 import pool_pb2 as ppb
from lucid.nodes.v1 import poot_pb2 as tpb

BATCHES = uuid.uuid5(uuid.NAMESPACE_URL, "lucid.local/nodes/epoch-payouts")


def batch_id_of(epoch: int) -> str:
    """The batch id of an epoch's run (the same every time)."""
    return str(uuid.uuid5(BATCHES, str(epoch)))


def contribution_of(entry: credits.Credits) -> float:
    """A node's contribution in the window (``owed.contribution``): the share of the
    window's slots it sent a beacon in, and the validation signatures it checked."""
    beacon_s = entry.by_task.get(tpb.TASK_TYPE_UPTIME_BEACON, (0.0, 0.0))[0]
    checked = entry.by_task.get(tpb.TASK_TYPE_VALIDATION_SIGNATURE, (0.0, 0.0))[0]
    return owed.contribution(beacon_s / credits.WINDOW.total_seconds(), checked)


def latest_poot_valid(node: NodeRecord) -> bool:
    """Whether the node's latest scored PoOT validation was valid."""
    return bool(node.poot_history) and bool(node.poot_history[-1]["valid"])


@dataclass(frozen=True)
class EpochRun:
    """What a run did."""

    epoch: int
    batch: BatchView | None
    carried: dict[str, int]


class EpochPayouts:
    """Runs epochs."""

    def __init__(
        self,
        nodes: NodeStore,
        proofs: ProofStore,
        payouts: Payouts,
        schedule: Schedule,
        clock: Clock,
        *,
        pools: PoolStore,
    ) -> None:
        self.pools = pools
        self.nodes = nodes
        self.proofs = proofs
        self.payouts = payouts
        self.schedule = schedule
        self.clock = clock

    async def run(self, epoch: int, caller: Caller) -> EpochRun:
        """Pays (or carries) what each node is owed for ``epoch``."""
        settings = await self.schedule.get()
        if int(settings["last_epoch"]) >= epoch:  # ran already: never count it twice
            existing = await self.payouts.store.batch(batch_id_of(epoch))
            view = await self.payouts.batch(existing.batch_id) if existing else None
            return EpochRun(epoch, view, dict(settings["carry"]))
        end = taskproofs.epoch_end(epoch)
        ranked = credits.tally(await self.proofs.sums(end - credits.WINDOW, end, by_pool=False))
        nodes = {n.node_id: n for n in await self.nodes.all()}
        payable = {n for n, node in nodes.items() if not address_problem(node.node_address)}
        budget = int(settings["epoch_budget_micros"])
        valid = {n for n in payable if latest_poot_valid(nodes[n])}
        shares = owed.pooled(
            budget,
            {n: c.total for n, c in ranked.items() if n in payable},
            valid,
            await self._pools(nodes.values()),
            {n: contribution_of(c) for n, c in ranked.items()},
        )
        result = owed.owed(
            budget,
            shares,
            valid=valid,
            carried={k: int(v) for k, v in (settings.get("carry") or {}).items()},
            minimum_micros=int(settings["minimum_payout_micros"]),
        )
        items = [
            PayoutItem(
                node_id=node_id,
                amount_micros=amount,
                currency=ypb.PAYOUT_CURRENCY_USDT,
                wallet_address=nodes[node_id].node_address,
                reason=f"epoch {epoch} work credits",
                work_credits=ranked[node_id].total if node_id in ranked else 0.0,
                epoch=epoch,
            )
            for node_id, amount in sorted(result.pay.items())
            if node_id in nodes
        ]
        batch = await self.payouts.submit(batch_id_of(epoch), items, caller) if items else None
        await self.schedule.record_run(epoch, result.carry, self.clock.now())
        return EpochRun(epoch, batch, result.carry)

    async def _pools(self, nodes: Iterable[NodeRecord]) -> list[owed.PoolSplit]:
        """The pools of ``nodes`` with their members and split modes."""
        members: dict[str, list[str]] = {}
        for node in nodes:
            if node.pool_id:
                members.setdefault(node.pool_id, []).append(node.node_id)
        found = []
        for pool_id, ids in sorted(members.items()):
            pool = await self.pools.get(pool_id)
            if pool is not None:
                mode = pool.reward_split or ppb.REWARD_SPLIT_WORK_CREDITS
                found.append(owed.PoolSplit(pool_id, ids, mode))
        return found

    async def due(self) -> EpochRun | None:
        """Runs the last finished epoch if the schedule is enabled and it has not run."""
        settings = await self.schedule.get()
        finished = taskproofs.epoch_of(taskproofs.slot_of(self.clock.now())) - 1
        if not settings["enabled"] or int(settings.get("last_epoch", -1)) >= finished:
            return None
        return await self.run(finished, Caller.cluster())
