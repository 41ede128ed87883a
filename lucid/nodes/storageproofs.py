"""Storage proofs (spec 05 §4, weight 0.5): data a node keeps and random-range challenges.

Each active node is given data to keep: 64 KiB expanded with SHAKE-256 from a
random 32-byte seed that only the cluster stores (on the node record, with the
assignment id), so the cluster can rebuild any range without keeping the data and
the node cannot make it without having been given it. A heartbeat whose
``held_assignment_id`` is not the node's current assignment gets fresh data (a new
assignment: data lost and fetched again is only challenged from the next slot, so
a node cannot fetch it to answer); one that holds it gets the slot's challenge: an
offset, a length and a nonce the cluster picks at random, kept in Redis
(``lucid:nodes:storage_challenge:<node>:<slot>``)
until answered or two slots have passed. The answer, SHA-256(nonce ‖ range), comes
with the node's signed storage proof of that slot (SubmitWorkProof) and is checked
here against the range rebuilt from the seed (a SHA-256 cannot be guessed, so a
wrong answer changes nothing); the right one takes the challenge, once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis
import redis.exceptions

from lucid.lib import taskproofs
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.nodes.schema import REDIS_PREFIX
from lucid.nodes.store.nodes import NodeRecord, NodeStore
from lucid.runtime.errors import ErrorCode, LucidError

DATA_BYTES = 64 * 1024
MIN_RANGE = 32
MAX_RANGE = 4096
CHALLENGE_TTL_S = 2 * taskproofs.SLOT_S


def expand(seed_hex: str) -> bytes:
    """The data of an assignment, from its seed."""
    return hashlib.shake_256(bytes.fromhex(seed_hex)).digest(DATA_BYTES)


def answer(data: bytes, offset: int, length: int, nonce_hex: str) -> str:
    """The answer to a challenge: SHA-256(nonce ‖ data[offset:offset+length]), hex."""
    return hashlib.sha256(bytes.fromhex(nonce_hex) + data[offset : offset + length]).hexdigest()


@dataclass(frozen=True)
class Assignment:
    """Data for a node to keep."""

    assignment_id: str
    data: bytes


@dataclass(frozen=True)
class Challenge:
    """A slot's random-range challenge."""

    assignment_id: str
    slot: int
    offset: int
    length: int
    nonce: str


def _key(node_id: str, slot: int) -> str:
    return f"{REDIS_PREFIX}storage_challenge:{node_id}:{slot}"


def _unavailable(exc: redis.exceptions.RedisError) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_CACHE_UNAVAILABLE, f"the storage challenges failed: {exc}"
    )


class StorageProofs:
    """Assignments, challenges and the check of answers."""

    def __init__(self, nodes: NodeStore, cache: aioredis.Redis, clock: Clock) -> None:
        self.nodes = nodes
        self.cache = cache
        self.clock = clock

    async def on_heartbeat(
        self, node: NodeRecord, held_assignment_id: str
    ) -> Assignment | Challenge | None:
        """What an active node's heartbeat reply carries: data to keep, this slot's
        challenge, or nothing (data given in this slot is challenged from the next)."""
        slot = taskproofs.slot_of(self.clock.now())
        if held_assignment_id != node.storage_assignment_id or not held_assignment_id:
            # Not held (new, or lost): fresh data, so a node cannot fetch it again to answer.
            assignment_id, seed = new_id(), secrets.token_hex(32)
            if await self.nodes.set_storage(node.node_id, assignment_id, seed, slot) is None:
                raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, f"node {node.node_id} not found")
            return Assignment(assignment_id, expand(seed))
        if slot <= node.storage_assigned_slot:
            return None
        length = MIN_RANGE + secrets.randbelow(MAX_RANGE - MIN_RANGE + 1)
        fresh = Challenge(
            assignment_id=node.storage_assignment_id,
            slot=slot,
            offset=secrets.randbelow(DATA_BYTES - length + 1),
            length=length,
            nonce=secrets.token_hex(16),
        )
        key = _key(node.node_id, slot)
        try:
            if await self.cache.set(key, json.dumps(fresh.__dict__), nx=True, ex=CHALLENGE_TTL_S):
                return fresh
            kept = await self.cache.get(key)  # issued earlier in this slot: the same one
            if kept is None:  # answered meanwhile: a new one (the slot's proof exists)
                await self.cache.set(key, json.dumps(fresh.__dict__), ex=CHALLENGE_TTL_S)
                return fresh
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        return Challenge(**json.loads(kept))

    async def check(self, node: NodeRecord, slot: int, storage_answer: str) -> None:
        """Checks the answer to the node's challenge of ``slot``; the right one takes it."""
        if not storage_answer:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                "a storage proof needs storage_answer, the answer to the slot's challenge",
            )
        key = _key(node.node_id, slot)
        try:
            kept = await self.cache.get(key)
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        if kept is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"no open storage challenge of slot {slot} for node {node.node_id}"
                " (heartbeat for one; each is answered once)",
            )
        challenge = Challenge(**json.loads(kept))
        if challenge.assignment_id != node.storage_assignment_id:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE, "the challenge's assignment was replaced"
            )
        expected = answer(
            expand(node.storage_seed), challenge.offset, challenge.length, challenge.nonce
        )
        if not hmac.compare_digest(expected, storage_answer):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                "the storage answer does not match the data the node was given",
            )
        try:
            taken = await self.cache.delete(key)  # the right answer takes it, once
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        if not taken:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE, "the storage challenge was answered meanwhile"
            )
