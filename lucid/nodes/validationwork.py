"""Validation signatures (spec 05 §4, weight 0.3 a signature): nodes check the
signatures of other nodes' task proofs, and sign that work.

Once a slot, an active node's heartbeat reply carries a validation task when other
nodes have proved tasks in the last day: the latest proof the chain accepted of up
to ``REAL_ITEMS`` other nodes (one each) whose signature the cluster verifies again
(the bytes each node signed, its public key and signature, and the node it is of)
and one or two decoys, copies of them with a byte of the message altered, shuffled
under random item ids. The node checks each Ed25519 signature and answers with a
signed validation proof of that slot (SubmitWorkProof, task VALIDATION_SIGNATURE,
value = the signatures it checked, ``valid_item_ids`` = those that verify). Only
the cluster knows which items are decoys: an answer whose count or verdicts differ
is refused. A task (Redis, ``lucid:nodes:validation_task:<node>:<slot>``) takes one
answer, right or wrong; after it the slot has no other task.

PoOT votes (spec 05 §1, to cluster 02): the answer may carry one signed vote per
item (``lucid.lib.pootvotes``: voter = the node, target = the node the item's proof
is of, approve when the item is among ``valid_item_ids``). Each must verify with the
node's registered key, or the answer is refused before it uses up the task. Once
the task is taken, the votes on real items go to the chain, never one on a decoy:
all of them when the node judged every decoy right, even if it rejected a real
proof (that verdict is a reject vote, and the proof is still refused); none when it
judged a decoy valid (it did not check, and its proof is refused as before).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import pootvotes, taskproofs
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
    node_id: str = ""
    """The node the proof is of (the target of a vote on the item)."""


@dataclass(frozen=True)
class Verdicts:
    """What an answer to a task comes to: the votes for the chain, and the refusal of
    the proof when a verdict is wrong."""

    votes: list[cpb.SubmitConsensusVoteRequest]
    error: LucidError | None = None


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
    return Item(secrets.token_hex(8), message.hex(), item.public_key, item.signature, item.node_id)


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
        items: list[Item] = []
        for proof in recent:
            if proof.node_id not in keys or any(i.node_id == proof.node_id for i in items):
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
                    proof.node_id,
                )
            )
            if len(items) == REAL_ITEMS:
                break
        return items

    async def check(
        self,
        node: NodeRecord,
        slot: int,
        value: float,
        valid_item_ids: list[str],
        votes: Sequence[tuple[str, str]] = (),
    ) -> Verdicts:
        """Checks the answer to the node's task of ``slot`` (the task takes one answer)
        and its votes, ``(item_id, signature)``; the votes for the chain."""
        key = _key(node.node_id, slot)
        try:
            kept = await self.cache.get(key)
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        stored: dict[str, Any] = json.loads(kept) if kept else {"answered": True}
        if stored.get("answered"):
            raise _no_task(node, slot)
        items = [Item(**i) for i in stored["items"]]
        ballots = _ballots(node, slot, items, set(valid_item_ids), votes)
        try:
            taken = await self._take(keys=[key], args=[ANSWERED, TASK_TTL_S])
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        if not taken or json.loads(taken).get("answered"):
            raise _no_task(node, slot)  # another answer took it meanwhile
        if round(value) != len(items):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"the task had {len(items)} signatures to check, not {round(value)}",
            )
        found, real = set(valid_item_ids), set(stored["valid"])
        wrong = LucidError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            "the signatures found valid are not the ones that verify",
        )
        if len(found) != len(valid_item_ids) or not found <= {i.item_id for i in items}:
            raise wrong
        if found - real:  # a decoy judged valid: the node did not check, its votes count not
            raise wrong
        chain_votes = [
            ballots[i.item_id] for i in items if i.item_id in real and i.item_id in ballots
        ]
        return Verdicts(chain_votes, None if found == real else wrong)


def _no_task(node: NodeRecord, slot: int) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_INVALID_STATE,
        f"no open validation task of slot {slot} for node {node.node_id}"
        " (heartbeat for one; each takes one answer)",
    )


def _ballots(
    node: NodeRecord,
    slot: int,
    items: list[Item],
    found: set[str],
    votes: Sequence[tuple[str, str]],
) -> dict[str, cpb.SubmitConsensusVoteRequest]:
    """The node's signed votes by item, each checked against its registered key: none,
    or one per item of the task."""
    if not votes:
        return {}
    by_item = dict(votes)
    if len(by_item) != len(votes) or set(by_item) != {i.item_id for i in items}:
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            "the votes are one per item of the task, or none",
        )
    ballots = {}
    for item in items:
        vote = pootvotes.poot_vote(
            voter_id=node.node_id,
            public_key=node.node_public_key,
            target_id=item.node_id,
            slot=slot,
            approve=item.item_id in found,
            proof_signature=item.signature,
        )
        vote.signature = by_item[item.item_id]
        if not pootvotes.verifies(vote):
            raise LucidError(
                ErrorCode.ERROR_CODE_CHAIN_SIGNATURE_INVALID,
                f"the vote on item {item.item_id} does not verify with the node's registered key",
            )
        if item.node_id:
            ballots[item.item_id] = vote
    return ballots
