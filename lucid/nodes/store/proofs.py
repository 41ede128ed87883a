"""Task proofs the chain accepted (``node_task_proofs``), one per (node, slot, task)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection

from lucid.nodes.store import Doc, from_doc, to_doc, translated


@dataclass(frozen=True)
class ProofRecord:
    """A task proof as the chain recorded it."""

    proof_id: str
    node_id: str
    pool_id: str
    slot: int
    task_type: int
    value: float
    proof_time: datetime
    signature: str
    epoch: int = 0


@dataclass(frozen=True)
class ProofSum:
    """Per entity and task type: how many proofs and the sum of their values."""

    entity_id: str
    task_type: int
    count: int
    value: float


class ProofStore:
    """Records proofs and sums them over windows."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._c = collection

    async def insert(self, record: ProofRecord) -> None:
        """Reserves (node, slot, task); ``DuplicateError`` when it was proved already."""
        with translated():
            await self._c.insert_one(to_doc(record, "proof_id"))

    async def set_chain_result(self, proof_id: str, chain_proof_id: str, epoch: int) -> None:
        """Records what the chain answered."""
        with translated():
            await self._c.update_one(
                {"_id": proof_id}, {"$set": {"chain_proof_id": chain_proof_id, "epoch": epoch}}
            )

    async def discard(self, proof_id: str) -> None:
        """Drops a reservation the chain refused."""
        with translated():
            await self._c.delete_one({"_id": proof_id})

    async def latest_of_others(
        self, node_id: str, since: datetime, until: datetime, limit: int
    ) -> list[ProofRecord]:
        """The latest proofs the chain accepted of nodes other than ``node_id`` in
        (since, until], newest first."""
        with translated():
            docs = (
                await self._c.find(
                    {
                        "node_id": {"$ne": node_id},
                        "proof_time": {"$gt": since, "$lte": until},
                        "chain_proof_id": {"$exists": True, "$ne": ""},
                    },
                    {"chain_proof_id": 0},
                )
                .sort("proof_time", -1)
                .limit(limit)
                .to_list(None)
            )
        return [from_doc(ProofRecord, d, "proof_id") for d in docs]

    async def sums(self, start: datetime, end: datetime, *, by_pool: bool) -> list[ProofSum]:
        """Counts and value sums per entity and task type, proofs in (start, end].

        Summed here rather than with ``$group``: FerretDB's ``$sum`` of a field
        path answers 0 for doubles.
        """
        key = "pool_id" if by_pool else "node_id"
        totals: dict[tuple[str, int], tuple[int, float]] = {}
        with translated():
            cursor = self._c.find(
                {"proof_time": {"$gt": start, "$lte": end}},
                {"_id": 0, key: 1, "task_type": 1, "value": 1},
            )
            async for doc in cursor:
                entity = doc.get(key) or ""
                if not entity:
                    continue
                group = (entity, int(doc["task_type"]))
                count, value = totals.get(group, (0, 0.0))
                totals[group] = (count + 1, value + float(doc["value"]))
        return [ProofSum(e, t, c, v) for (e, t), (c, v) in totals.items()]

    async def count(self, node_id: str, task_type: int, start: datetime, end: datetime) -> int:
        """A node's proofs of one task type in (start, end]."""
        with translated():
            return await self._c.count_documents(
                {
                    "node_id": node_id,
                    "task_type": task_type,
                    "proof_time": {"$gt": start, "$lte": end},
                }
            )
