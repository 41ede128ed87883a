"""Task proofs of nodes: checked against the node's registered key, then put on the chain.

A node agent signs a ``lucid.blockchain.v1.TaskProof`` (``lucid.lib.taskproofs``)
with the key recorded at registration; the proof's time is its slot's start.
SubmitWorkProof rebuilds
that proof from the request and the node's record, refuses a signature that
does not verify with the registered key (``LUCID_ERR_4105``), a slot other than
the current or previous one, a node that is not active or not the caller's, and
a second proof for the same (node, slot, task) (ALREADY_EXISTS). It then hands
the proof to the chain's SubmitTaskProof; what the chain refuses is not kept. A
storage proof also carries the answer to the node's challenge of that slot, checked
against the data the node was given (``lucid.nodes.storageproofs``) before it is
kept, and a validation proof its verdicts on the slot's validation task
(``lucid.nodes.validationwork``); a wrong or missing answer refuses the proof. The
PoOT votes those verdicts carry go to the chain's SubmitConsensusVote before the
proof (a vote the chain refuses refuses the proof).
"""

from __future__ import annotations

from dataclasses import dataclass

from lucid.lib import taskproofs
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.nodes import credits
from lucid.nodes.callers import Caller
from lucid.nodes.chain import ChainProofs
from lucid.nodes.storageproofs import StorageProofs
from lucid.nodes.store import DuplicateError
from lucid.nodes.store.nodes import NodeRecord, NodeStore
from lucid.nodes.store.proofs import ProofRecord, ProofStore
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import poot_pb2 as ppb
from lucid.nodes.validationwork import ValidationWork
from lucid.runtime.errors import ErrorCode, LucidError, not_found


@dataclass(frozen=True)
class Submitted:
    """An accepted proof."""

    proof_id: str
    credits: float
    epoch: int
    vote_ids: tuple[str, ...] = ()
    """The chain's ids of the PoOT votes of a validation proof."""


class WorkProofs:
    """Accepts task proofs."""

    def __init__(
        self,
        nodes: NodeStore,
        proofs: ProofStore,
        chain: ChainProofs,
        clock: Clock,
        *,
        storage: StorageProofs,
        validation: ValidationWork,
    ) -> None:
        self.storage = storage
        self.validation = validation
        self.nodes = nodes
        self.proofs = proofs
        self.chain = chain
        self.clock = clock

    async def submit(
        self,
        *,
        node_id: str,
        pool_id: str,
        slot: int,
        task_type: int,
        value: float,
        signature: str,
        caller: Caller,
        storage_answer: str = "",
        valid_item_ids: tuple[str, ...] = (),
        votes: tuple[tuple[str, str], ...] = (),
    ) -> Submitted:
        """Checks a proof, puts it on the chain and records it."""
        node = await self.nodes.get(node_id)
        if node is None or not caller.may_act_on(node.owner_user_id):
            raise not_found(f"node {node_id}")
        if node.state != npb.NODE_STATE_ACTIVE:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, f"node {node_id} is not active")
        if pool_id and pool_id != node.pool_id:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT, f"node {node_id} is not in pool {pool_id}"
            )
        current = taskproofs.slot_of(self.clock.now())
        if slot not in (current, current - 1):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"slot {slot} is not the current task slot ({current}) or the one before",
            )
        proof = taskproofs.task_proof(
            node_id=node_id,
            pool_id=node.pool_id,
            slot=slot,
            task_type=task_type,
            value=round(value),
            public_key=node.node_public_key,
        )
        proof.signature = signature
        if not taskproofs.verifies(proof):
            raise LucidError(
                ErrorCode.ERROR_CODE_CHAIN_SIGNATURE_INVALID,
                "the proof's signature does not verify with the node's registered key",
            )
        if storage_answer and task_type != ppb.TASK_TYPE_STORAGE_PROOF:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "storage_answer is only for storage proofs"
            )
        if (valid_item_ids or votes) and task_type != ppb.TASK_TYPE_VALIDATION_SIGNATURE:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                "valid_item_ids and votes are only for validation proofs",
            )
        record = ProofRecord(
            proof_id=new_id(),
            node_id=node_id,
            pool_id=node.pool_id,
            slot=slot,
            task_type=task_type,
            value=float(round(value)),
            proof_time=taskproofs.slot_start(slot),
            signature=signature,
        )
        try:
            await self.proofs.insert(record)
        except DuplicateError:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"node {node_id} already proved this task in slot {slot}",
            ) from None
        try:
            # The answer to a challenge or task is checked once the slot is reserved, so
            # a duplicate proof does not use up the node's challenge.
            vote_ids: list[str] = []
            if task_type == ppb.TASK_TYPE_STORAGE_PROOF:
                await self.storage.check(node, slot, storage_answer)
            elif task_type == ppb.TASK_TYPE_VALIDATION_SIGNATURE:
                vote_ids = await self._validated(node, slot, value, valid_item_ids, votes)
            answer = await self.chain.submit(proof)
        except LucidError:
            await self.proofs.discard(record.proof_id)
            raise
        await self.proofs.set_chain_result(record.proof_id, answer.proof_id, answer.epoch)
        earned = credits.units(task_type, 1, record.value) * credits.WEIGHTS[task_type]
        return Submitted(
            proof_id=answer.proof_id,
            credits=round(earned, 6),
            epoch=answer.epoch,
            vote_ids=tuple(vote_ids),
        )

    async def _validated(
        self,
        node: NodeRecord,
        slot: int,
        value: float,
        valid_item_ids: tuple[str, ...],
        votes: tuple[tuple[str, str], ...],
    ) -> list[str]:
        """Checks the answer to a validation task and puts its PoOT votes on the chain;
        their chain ids. A wrong verdict refuses the proof after its votes are sent."""
        verdicts = await self.validation.check(node, slot, value, list(valid_item_ids), votes)
        vote_ids = [(await self.chain.vote(vote)).vote_id for vote in verdicts.votes]
        if verdicts.error is not None:
            raise verdicts.error
        return vote_ids
