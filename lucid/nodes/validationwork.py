"""Validation signatures (spec 05 §4, weight 0.3 a signature): nodes check the
signatures of other nodes' task proofs, and sign that work.

Once a slot, an active node's heartbeat reply carries a validation task when other
nodes have proved tasks in the last day: up to ``REAL_ITEMS`` of their latest
proofs the chain accepted whose signature the cluster verifies again (the bytes
each node signed, its public key and signature) and one or two decoys, copies of
them with a byte of the message altered, shuffled under random item ids. The node
checks each Ed25519 signature and answers with a signed validation proof of that
slot (SubmitWorkProof, task VALIDATION_SIGNATURE, value = the signatures it
checked, ``valid_item_ids`` = those that verify). Only the cluster knows which
items are decoys: an answer whose count or verdicts differ is refused. A task
(Redis, ``lucid:nodes:validation_task:<node>:<slot>``) takes one answer, right or
wrong; after it the slot has no other task.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from lucid.lib import taskproofs
from lucid.lib.clock import Clock
from lucid.nodes.schema import REDIS_PREFIX
from lucid.nodes.store.nodes import NodeRecord, NodeStore
from lucid.nodes.store.proofs import ProofStore
from lucid.runtime.errors import ErrorCode, LucidError

REAL_ITEMS = 3
SCANNED = 30
"""How many of the latest proofs are read to find ``REAL_ITEMS`` that verify."""
ANSWERED = json.dumps({"answered": True})
_TAKE = """
local kept = redis.call('GET', KEYS[1])
if not kept then return false end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return kept
"""
"""Takes a task for its one answer (a task never issued stays so)."""
RECENT = timedelta(days=1)
TASK_TTL_S = 2 * taskproofs.SLOT_S


@dataclass(frozen=True)
class Item:
    """One signature to check."""

    item_id: str
    message: str
    """Hex of the signed bytes."""
    public_key: str
    signature: str


@dataclass(frozen=True)
class Task:
    """A slot's validation task."""

    slot: int
    items: list[Item]


def _key(node_id: str, slot: int) -> str:
    return f"{REDIS_PREFIX}validation_task:{node_id}:{slot}"


def _unavailable(exc: redis.exceptions.RedisError) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_CACHE_UNAVAILABLE, f"the validation tasks failed: {exc}")


def _altered(item: Item) -> Item:
    message = bytearray(bytes.fromhex(item.message))
    message[secrets.randbelow(len(message))] ^= 1 + secrets.randbelow(255)
    return Item(secrets.token_hex(8), message.hex(), item.public_key, item.signature)


class ValidationWork:
    """Validation tasks and the check of answers."""

    def __init__(
        self, nodes: NodeStore, proofs: ProofStore, cache: aioredis.Redis, clock: Clock
    ) -> None:
        self.nodes = nodes
        self.proofs = proofs
        self.cache = cache
        self.clock = clock
        self._take = cache.register_script(_TAKE)

    async def on_heartbeat(self, node: NodeRecord) -> Task | None:
        """The node's validation task of this slot (the same one all slot long), or None
        when it was answered or there is nothing of other nodes to check."""
        now = self.clock.now()
        slot = taskproofs.slot_of(now)
        key = _key(node.node_id, slot)
        try:
            kept = await self.cache.get(key)
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        if kept is not None:
            stored = json.loads(kept)
            if stored.get("answered"):
                return None
            return Task(slot, [Item(**i) for i in stored["items"]])
        real = await self._real_items(node.node_id)
        if not real:
            return None
        decoys = [_altered(secrets.choice(real)) for _ in range(1 + secrets.randbelow(2))]
        items = real + decoys
        secrets.SystemRandom().shuffle(items)
        stored = {"items": [asdict(i) for i in items], "valid": [i.item_id for i in real]}
        try:
            if not await self.cache.set(key, json.dumps(stored), nx=True, ex=TASK_TTL_S):
                return await self.on_heartbeat(node)  # another heartbeat made it first
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        return Task(slot, items)

    async def _real_items(self, node_id: str) -> list[Item]:
        """Other nodes' latest proofs (up to now) whose signature verifies here too."""
        now = self.clock.now()
        recent = await self.proofs.latest_of_others(node_id, now - RECENT, now, SCANNED)
        keys = await self.nodes.public_keys({p.node_id for p in recent})
        items = []
        for proof in recent:
            if proof.node_id not in keys:
                continue
            rebuilt = taskproofs.task_proof(
                node_id=proof.node_id,
                pool_id=proof.pool_id,
                slot=proof.slot,
                task_type=proof.task_type,
                value=round(proof.value),
                public_key=keys[proof.node_id],
            )
            rebuilt.signature = proof.signature
            if not taskproofs.verifies(rebuilt):  # the cluster's own verdict decides
                continue
            items.append(
                Item(
                    secrets.token_hex(8),
                    taskproofs.signing_bytes(rebuilt).hex(),
                    keys[proof.node_id],
                    proof.signature,
                )
            )
            if len(items) == REAL_ITEMS:
                break
        return items

    async def check(
        self, node: NodeRecord, slot: int, value: float, valid_item_ids: list[str]
    ) -> None:
        """Checks the answer to the node's task of ``slot`` (the task takes one answer)."""
        try:
            kept = await self._take(keys=[_key(node.node_id, slot)], args=[ANSWERED, TASK_TTL_S])
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        stored: dict[str, Any] = json.loads(kept) if kept else {"answered": True}
        if stored.get("answered"):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"no open validation task of slot {slot} for node {node.node_id}"
                " (heartbeat for one; each takes one answer)",
            )
        if round(value) != len(stored["items"]):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"the task had {len(stored['items'])} signatures to check, not {round(value)}",
            )
        found = set(valid_item_ids)
        if found != set(stored["valid"]) or len(found) != len(valid_item_ids):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                "the signatures found valid are not the ones that verify",
            )
