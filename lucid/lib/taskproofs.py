"""Task proofs of nodes (spec 02 §4, DECISIONS): slots and the Ed25519 signature.

A task slot is 120 s counted from 2024-01-01T00:00:00Z; an epoch is 720 slots. A
node signs a ``lucid.blockchain.v1.TaskProof`` with Ed25519 over the chain's
canonical encoding (``canonical.TASK_PROOF_TAG`` + every field but the
signature); its ``proof_time`` is the start of its slot, so the node agent that
signs and the nodes cluster that checks build the same bytes. Pure functions,
shared by the nodes cluster and the node agent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import nacl.exceptions
import nacl.signing

from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import canonical

ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
SLOT_S = 120
EPOCH_SLOTS = 720


def slot_of(moment: datetime) -> int:
    """The task slot of a moment."""
    return max(0, int((moment - ORIGIN).total_seconds() // SLOT_S))


LATEST = datetime.max.replace(tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)


def slot_start(slot: int) -> datetime:
    """When a slot begins; the last (or first) datetime for a slot beyond what a datetime
    can hold (an epoch number from a request may be any int64)."""
    try:
        return ORIGIN + timedelta(seconds=slot * SLOT_S)
    except OverflowError:
        return LATEST if slot > 0 else EARLIEST


def epoch_of(slot: int) -> int:
    """The epoch of a slot."""
    return slot // EPOCH_SLOTS


def epoch_end(epoch: int) -> datetime:
    """When an epoch ends."""
    return slot_start((epoch + 1) * EPOCH_SLOTS)


def task_proof(
    *, node_id: str, pool_id: str, slot: int, task_type: int, value: int, public_key: str
) -> cpb.TaskProof:
    """The proof of a node's task in a slot, unsigned."""
    proof = cpb.TaskProof(
        node_id=node_id,
        pool_id=pool_id,
        slot=slot,
        task_type=task_type,  # type: ignore[arg-type]
        value=value,
        public_key=public_key,
    )
    proof.proof_time.FromDatetime(slot_start(slot))
    return proof


def signing_bytes(proof: cpb.TaskProof) -> bytes:
    """What a proof's signature covers (the chain's definition)."""
    return canonical.encode_message(
        canonical.TASK_PROOF_TAG, proof, exclude=frozenset({"signature"})
    )


def sign(proof: cpb.TaskProof, key: nacl.signing.SigningKey) -> str:
    """The signature of a proof, hex."""
    return key.sign(signing_bytes(proof)).signature.hex()


def verifies(proof: cpb.TaskProof) -> bool:
    """Whether the signature verifies with the proof's public key."""
    try:
        nacl.signing.VerifyKey(bytes.fromhex(proof.public_key)).verify(
            signing_bytes(proof), bytes.fromhex(proof.signature)
        )
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True
