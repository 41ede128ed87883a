"""PoOT, Proof of Operational Tasks (spec 02 §4): task proofs, work credits, leaders.

Pure functions, no I/O.

**Task slots.** A node proves one task per 120 s *task slot*, counted from
2024-01-01T00:00:00Z; an epoch is 720 task slots (a day). A proof is signed with
Ed25519 over ``b"lucid_blocks/task-proof/v1\\n"`` + the canonical JSON of every
field but the signature. Proofs reach the chain as ``poot.task_proof`` system
transactions, so every validator computes the same credits from the same blocks.

**Work credits** over a 7-day window: relay = max(sessions relayed, ⌈MiB / 5⌉);
storage = ⌊GiB x 10⌋ + 2 x chunks (the largest holding reported in the window);
validation = 5 x sessions validated; uptime score = min(Σ uptime s / 604 800, 1);
live score = (relay + storage + validation) x uptime score. A node may lead when
its credits are > 0 and its uptime score is ≥ 0.2 (so its live score is ≥ 0.2).

**Leaders.** The chain elects leaders per height (a "slot" of the chain). The
candidates are the validators, each ranked by the work credits of its node. The
order is: the eligible candidates that did not propose any of the last 16 blocks,
by live score, ties broken by ``SHA-256("{height}_{sorted ids}_{seed}")`` (first 8
hex digits mod n, repeated over the remaining ids) with the previous block's hash
as the seed; then — the spec's ``fallback_node``, so that a slot always has a
leader — every other validator in seed order. The primary leads round 0 and the
next five are the fallbacks; round r is led by entry r mod the list's length.
Until nodes send proofs, validators record their own uptime beacons, which give
no credits: every validator is then ineligible and the order is the seed order.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format, struct_pb2

from lucid.blockchain.keys import verify_signature
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import canonical, taskproofs
from lucid.runtime.errors import ErrorCode, LucidError

# Slots and epochs are the task-proof primitives every cluster shares (lucid.lib.taskproofs);
# the chain's names for them.
ORIGIN = taskproofs.ORIGIN
TASK_SLOT_S = taskproofs.SLOT_S
EPOCH_SLOTS = taskproofs.EPOCH_SLOTS
task_slot = taskproofs.slot_of
epoch_of_slot = taskproofs.epoch_of
epoch_end = taskproofs.epoch_end
WINDOW = timedelta(days=7)
WEEK_S = 604_800
MIB = 1024 * 1024
GIB = 1024 * MIB
RECENT_WINNERS = 16
MAX_FALLBACKS = 5
MIN_UPTIME = 0.2
MIN_LIVE_SCORE = 0.2

RELAY = cpb.TASK_TYPE_RELAY_BANDWIDTH
STORAGE = cpb.TASK_TYPE_STORAGE_AVAILABILITY
VALIDATION = cpb.TASK_TYPE_VALIDATION_SIGNATURE
UPTIME_BEACON = cpb.TASK_TYPE_UPTIME_BEACON


def validator_node_id(public_key_hex: str) -> str:
    """The node id (UUIDv4 form) a validator's uptime beacons carry: from its key."""
    seed = b"lucid_blocks/validator-node\x00" + bytes.fromhex(public_key_hex)
    raw = bytearray(hashlib.sha256(seed).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


# -- task proofs --------------------------------------------------------------------


def proof_message(proof: cpb.TaskProof) -> bytes:
    """What a task proof's signature covers."""
    try:
        return taskproofs.signing_bytes(proof)
    except canonical.EncodingError as exc:
        raise LucidError(ErrorCode.ERROR_CODE_TRANSACTION_INVALID, f"task proof: {exc}") from None


@dataclass(frozen=True)
class TaskFacts:
    """What a task proof says, as the tally reads it."""

    node_id: str
    pool_id: str
    slot: int
    task_type: int
    value: int
    session_count: int
    chunk_count: int
    proof_time: datetime

    @property
    def proof_us(self) -> int:
        """The proof time in whole microseconds since the epoch (exact, for windows)."""
        return micros(self.proof_time)

    def as_doc(self) -> dict[str, Any]:
        """Stored form."""
        return {
            "node_id": self.node_id,
            "pool_id": self.pool_id,
            "slot": self.slot,
            "task_type": self.task_type,
            "value": self.value,
            "session_count": self.session_count,
            "chunk_count": self.chunk_count,
            "proof_time": self.proof_time,
            "proof_us": self.proof_us,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TaskFacts:
        """From the stored form."""
        return cls(
            node_id=doc["node_id"],
            pool_id=doc.get("pool_id", ""),
            slot=int(doc["slot"]),
            task_type=int(doc["task_type"]),
            value=int(doc["value"]),
            session_count=int(doc.get("session_count", 0)),
            chunk_count=int(doc.get("chunk_count", 0)),
            proof_time=EPOCH + timedelta(microseconds=int(doc["proof_us"])),
        )


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WINDOW_US = 7 * 24 * 3600 * 1_000_000


def micros(moment: datetime) -> int:
    """A moment in whole microseconds since the epoch (exact integer arithmetic)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def in_window(fact: TaskFacts, end_us: int) -> bool:
    """Whether a proof lies in the 7-day window that ends at ``end_us`` (end included)."""
    return end_us - WINDOW_US < fact.proof_us <= end_us


def check_task_proof(proof: cpb.TaskProof) -> TaskFacts:
    """Checks a proof's signature and slot; its facts when it keeps the rules."""
    if not verify_signature(proof.public_key, proof_message(proof), proof.signature):
        raise LucidError(
            ErrorCode.ERROR_CODE_CHAIN_SIGNATURE_INVALID,
            "the task proof's signature does not verify",
        )
    proof_time = proof.proof_time.ToDatetime(tzinfo=UTC)
    if proof.slot != task_slot(proof_time):
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            f"slot {proof.slot} is not the task slot of proof_time ({task_slot(proof_time)})",
        )
    if proof.task_type == UPTIME_BEACON and proof.value > TASK_SLOT_S:
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            f"an uptime beacon counts at most {TASK_SLOT_S} s (one task slot)",
        )
    return TaskFacts(
        node_id=proof.node_id,
        pool_id=proof.pool_id,
        slot=proof.slot,
        task_type=int(proof.task_type),
        value=proof.value,
        session_count=proof.session_count,
        chunk_count=proof.chunk_count,
        proof_time=proof_time,
    )


def proof_parameters(proof: cpb.TaskProof) -> struct_pb2.Struct:
    """The system-transaction parameters carrying a proof."""
    params = struct_pb2.Struct()
    params.update({"proof": canonical.to_canonical_data(proof)})
    return params


def proof_from_parameters(params: struct_pb2.Struct) -> cpb.TaskProof:
    """The proof a ``poot.task_proof`` transaction carries."""
    data = canonical.to_canonical_data(params)
    proof = cpb.TaskProof()
    try:
        json_format.ParseDict(data["proof"], proof)
    except (KeyError, json_format.ParseError, TypeError) as exc:
        raise LucidError(
            ErrorCode.ERROR_CODE_TRANSACTION_INVALID,
            f"a task-proof transaction needs a proof: {exc}",
        ) from None
    return proof


# -- work credits --------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """One entity's work credits over a window."""

    entity_id: str
    relay_credits: int
    storage_credits: int
    validation_credits: int
    uptime_score: float

    @property
    def credits(self) -> int:
        """relay + storage + validation."""
        return self.relay_credits + self.storage_credits + self.validation_credits

    @property
    def live_score(self) -> float:
        """credits x uptime score."""
        return self.credits * self.uptime_score

    @property
    def eligible(self) -> bool:
        """Whether it may lead: credits > 0, uptime ≥ 0.2 and live score ≥ 0.2."""
        return (
            self.credits > 0
            and self.uptime_score >= MIN_UPTIME
            and self.live_score >= MIN_LIVE_SCORE
        )


def relay_credits(sessions_relayed: int, bytes_relayed: int) -> int:
    """max(sessions relayed, ⌈MiB / 5⌉)."""
    return max(sessions_relayed, math.ceil(bytes_relayed / MIB / 5))


def storage_credits(bytes_stored: int, chunks: int) -> int:
    """⌊GiB x 10⌋ + 2 x chunks."""
    return math.floor(bytes_stored * 10 / GIB) + 2 * chunks


def validation_credits(sessions_validated: int) -> int:
    """5 x sessions validated."""
    return 5 * sessions_validated


def uptime_score(seconds_up: int) -> float:
    """min(Σ uptime seconds / 604 800, 1)."""
    return min(seconds_up / WEEK_S, 1.0)


def tally(entity_id: str, facts: Iterable[TaskFacts]) -> Tally:
    """The credits of one entity from its proofs of one window."""
    relayed_sessions = relayed_bytes = validated = up = 0
    stored_bytes = stored_chunks = 0
    for fact in facts:
        if fact.task_type == RELAY:
            relayed_sessions += fact.session_count
            relayed_bytes += fact.value
        elif fact.task_type == STORAGE:
            stored_bytes = max(stored_bytes, fact.value)
            stored_chunks = max(stored_chunks, fact.chunk_count)
        elif fact.task_type == VALIDATION:
            validated += fact.value
        elif fact.task_type == UPTIME_BEACON:
            up += fact.value
    return Tally(
        entity_id=entity_id,
        relay_credits=relay_credits(relayed_sessions, relayed_bytes),
        storage_credits=storage_credits(stored_bytes, stored_chunks),
        validation_credits=validation_credits(validated),
        uptime_score=uptime_score(up),
    )


def tallies(facts: Iterable[TaskFacts], *, by_pool: bool = False) -> dict[str, Tally]:
    """Every entity's tally (nodes, or pools when ``by_pool``)."""
    grouped: dict[str, list[TaskFacts]] = {}
    for fact in facts:
        key = fact.pool_id if by_pool else fact.node_id
        if key:
            grouped.setdefault(key, []).append(fact)
    return {key: tally(key, group) for key, group in grouped.items()}


def ranked(all_tallies: Iterable[Tally]) -> list[Tally]:
    """Tallies by live score, highest first (ties by entity id)."""
    return sorted(all_tallies, key=lambda t: (-t.live_score, t.entity_id))


# -- leaders ---------------------------------------------------------------------------


def tie_order(ids: Sequence[str], slot: int, seed: str) -> list[str]:
    """Orders tied candidates: pick ``int(SHA-256("{slot}_{sorted ids}_{seed}")[:8], 16) mod n``
    from the sorted remaining ids, repeatedly."""
    remaining = sorted(ids)
    order: list[str] = []
    while remaining:
        digest = hashlib.sha256(f"{slot}_{','.join(remaining)}_{seed}".encode()).hexdigest()
        order.append(remaining.pop(int(digest[:8], 16) % len(remaining)))
    return order


@dataclass(frozen=True)
class Schedule:
    """The leaders of one slot (height): primary, then up to five fallbacks."""

    slot: int
    leaders: tuple[str, ...]

    @property
    def primary(self) -> str:
        """Round 0's leader."""
        return self.leaders[0]

    @property
    def fallbacks(self) -> tuple[str, ...]:
        """The fallbacks, in order."""
        return self.leaders[1:]

    def leader(self, round_: int) -> str:
        """The leader of a round."""
        return self.leaders[round_ % len(self.leaders)]


def schedule(
    *,
    slot: int,
    seed: str,
    candidates: Sequence[str],
    scores: dict[str, Tally],
    recent_winners: Iterable[str] = (),
) -> Schedule:
    """The leader order of a slot (see the module doc)."""
    if not candidates:
        raise ValueError("a schedule needs candidates")
    recent = set(recent_winners)
    eligible = [c for c in candidates if c not in recent and c in scores and scores[c].eligible]
    by_score: dict[float, list[str]] = {}
    for candidate in eligible:
        by_score.setdefault(scores[candidate].live_score, []).append(candidate)
    order: list[str] = []
    for score in sorted(by_score, reverse=True):
        order += tie_order(by_score[score], slot, seed)
    order += tie_order([c for c in candidates if c not in order], slot, seed)
    return Schedule(slot=slot, leaders=tuple(order[: 1 + MAX_FALLBACKS]))
