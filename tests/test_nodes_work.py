"""Storage and validation proofs over real gRPC/mTLS, FerretDB, Redis and the chain:
an active node is given data to keep on a heartbeat and answers a random-range
challenge of a later slot with a signed storage proof (credits 0.5, on the chain);
it checks the signatures of other nodes' proofs, decoys among them, with a signed
validation proof (0.3 a signature), its verdicts on real proofs PoOT votes on the chain.
A wrong, missing or misplaced answer is refused with nothing stored."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import grpc
import nacl.exceptions
import nacl.signing
import pytest

from lucid.blockchain.v1 import blockchain_pb2 as pb
from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import pootvotes, taskproofs
from lucid.nodes import schema
from lucid.nodes.storageproofs import DATA_BYTES
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import poot_pb2 as tpb
from lucid.nodes.validationwork import REAL_ITEMS
from tests.chain_support import ChainStubs, wait_for
from tests.nodes_support import (
    NodeKeys,
    NodesKit,
    OffsetClock,
    Operator,
    nodes_kit,
)
from tests.support import Mesh, details

CLOCK = OffsetClock()


@pytest.fixture(scope="module")
async def kit(mesh: Mesh) -> AsyncIterator[NodesKit]:
    async with nodes_kit(mesh, CLOCK) as kit:
        yield kit


def signed(
    kit: NodesKit, node: npb.Node, keys: NodeKeys, slot: int, task_type: int, value: int
) -> tpb.SubmitWorkProofRequest:
    request = kit.beacon(node, keys, slot)  # signed the same way, as another task
    proof = taskproofs.task_proof(
        node_id=node.node_id,
        pool_id=node.pool_id,
        slot=slot,
        task_type=task_type,
        value=value,
        public_key=keys.public_hex,
    )
    request.task_type = task_type  # type: ignore[assignment]
    request.value = value
    request.signature = taskproofs.sign(proof, keys.signing)
    return request


def storage_proof(
    kit: NodesKit, node: npb.Node, keys: NodeKeys, slot: int, answer: str
) -> tpb.SubmitWorkProofRequest:
    request = signed(kit, node, keys, slot, tpb.TASK_TYPE_STORAGE_PROOF, 1)
    request.storage_answer = answer
    return request


def validation_proof(
    kit: NodesKit, node: npb.Node, keys: NodeKeys, task: npb.ValidationTask, valid: list[str]
) -> tpb.SubmitWorkProofRequest:
    request = signed(
        kit, node, keys, task.slot, tpb.TASK_TYPE_VALIDATION_SIGNATURE, len(task.items)
    )
    request.valid_item_ids.extend(valid)
    return request


def verifies(item: npb.ValidationItem) -> bool:
    try:
        nacl.signing.VerifyKey(bytes.fromhex(item.public_key)).verify(
            item.message, bytes.fromhex(item.signature)
        )
    except nacl.exceptions.BadSignatureError:
        return False
    return True


async def beat(kit: NodesKit, op: Operator, node: npb.Node) -> npb.SendHeartbeatResponse:
    reply: npb.SendHeartbeatResponse = await kit.nodes.SendHeartbeat(
        npb.SendHeartbeatRequest(node_id=node.node_id), metadata=op.md
    )
    return reply


async def credits_of(kit: NodesKit, op: Operator, node: npb.Node) -> tpb.GetWorkCreditsResponse:
    report: tpb.GetWorkCreditsResponse = await kit.credits.GetWorkCredits(
        tpb.GetWorkCreditsRequest(node_id=node.node_id), metadata=op.md
    )
    return report


def answer(data: bytes, challenge: npb.StorageChallenge) -> str:
    piece = data[challenge.offset : challenge.offset + challenge.length]
    return hashlib.sha256(bytes.fromhex(challenge.nonce) + piece).hexdigest()


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


async def test_a_node_keeps_its_data_and_answers_a_random_range(kit: NodesKit) -> None:
    op = await kit.operator()
    node, keys = await kit.active_node(op)

    async def beat(held: str = "") -> npb.SendHeartbeatResponse:
        reply: npb.SendHeartbeatResponse = await kit.nodes.SendHeartbeat(
            npb.SendHeartbeatRequest(node_id=node.node_id, held_assignment_id=held),
            metadata=op.md,
        )
        return reply

    CLOCK.offset_s = -taskproofs.SLOT_S  # the data is given in the slot before the present
    given = await beat()
    assert len(given.storage_assignment.data) == DATA_BYTES
    assert not given.HasField("storage_challenge")
    data, held = given.storage_assignment.data, given.storage_assignment.assignment_id
    same_slot = await beat(held)  # held, but given in this slot: nothing to answer yet
    assert not same_slot.HasField("storage_challenge")
    assert not same_slot.HasField("storage_assignment")

    CLOCK.offset_s = 0
    slot = taskproofs.slot_of(CLOCK.now())
    challenge = (await beat(held)).storage_challenge
    assert (challenge.assignment_id, challenge.slot) == (held, slot)
    assert 0 <= challenge.offset <= DATA_BYTES - challenge.length
    assert (await beat(held)).storage_challenge == challenge  # one challenge a slot

    missing = await refused(
        kit.credits.SubmitWorkProof(storage_proof(kit, node, keys, slot, ""), metadata=op.md)
    )
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(missing).reason == "LUCID_ERR_1001"
    on_beacon = kit.beacon(node, keys, slot)
    on_beacon.storage_answer = answer(data, challenge)
    misplaced = await refused(kit.credits.SubmitWorkProof(on_beacon, metadata=op.md))
    assert misplaced.code() == grpc.StatusCode.INVALID_ARGUMENT
    forged = storage_proof(kit, node, NodeKeys(), slot, answer(data, challenge))  # other key
    forged_error = await refused(kit.credits.SubmitWorkProof(forged, metadata=op.md))
    assert details(forged_error).reason == "LUCID_ERR_4105"

    wrong = answer(b"\0" * DATA_BYTES, challenge)  # a node without the data
    error = await refused(
        kit.credits.SubmitWorkProof(storage_proof(kit, node, keys, slot, wrong), metadata=op.md)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not match" in str(error.details())
    report = await kit.credits.GetWorkCredits(
        tpb.GetWorkCreditsRequest(node_id=node.node_id), metadata=op.md
    )
    assert report.credits == 0  # nothing refused was kept
    assert (await beat(held)).storage_challenge == challenge  # nor the challenge changed

    accepted = await kit.credits.SubmitWorkProof(
        storage_proof(kit, node, keys, slot, answer(data, challenge)), metadata=op.md
    )
    assert accepted.credits == pytest.approx(0.5)
    fresh = (await beat(held)).storage_challenge  # the right answer took the challenge
    assert fresh.nonce != challenge.nonce
    duplicate = await refused(
        kit.credits.SubmitWorkProof(
            storage_proof(kit, node, keys, slot, answer(data, fresh)), metadata=op.md
        )
    )
    assert duplicate.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (await beat(held)).storage_challenge == fresh  # a duplicate does not use it up
    report = await kit.credits.GetWorkCredits(
        tpb.GetWorkCreditsRequest(node_id=node.node_id), metadata=op.md
    )
    assert [(t.task_type, t.value) for t in report.by_task] == [(tpb.TASK_TYPE_STORAGE_PROOF, 1)]
    assert report.credits == pytest.approx(0.5)

    async def on_chain() -> list[str] | None:
        async with kit.mesh.channel("blockchain") as channel:
            tallies = await ChainStubs(channel).consensus.GetWorkCredits(
                cpb.GetWorkCreditsRequest(entity_id=node.node_id), metadata=kit.admin
            )
        return [t.entity_id for t in tallies.tallies] or None

    assert await wait_for(on_chain, timeout_s=30) == [node.node_id]


async def test_data_asked_for_again_is_new_data_challenged_only_later(kit: NodesKit) -> None:
    CLOCK.offset_s = 0
    op = await kit.operator()
    node, keys = await kit.active_node(op)
    first = await kit.nodes.SendHeartbeat(
        npb.SendHeartbeatRequest(node_id=node.node_id), metadata=op.md
    )
    again = await kit.nodes.SendHeartbeat(  # lost it: asks without holding it
        npb.SendHeartbeatRequest(node_id=node.node_id), metadata=op.md
    )
    assert again.storage_assignment.assignment_id != first.storage_assignment.assignment_id
    assert again.storage_assignment.data != first.storage_assignment.data
    stale = await kit.nodes.SendHeartbeat(  # the replaced data is no longer asked for
        npb.SendHeartbeatRequest(
            node_id=node.node_id, held_assignment_id=first.storage_assignment.assignment_id
        ),
        metadata=op.md,
    )
    assert stale.HasField("storage_assignment")
    assert not stale.HasField("storage_challenge")
    slot = taskproofs.slot_of(CLOCK.now())
    unasked = await refused(  # no challenge in the slot the data was given in
        kit.credits.SubmitWorkProof(storage_proof(kit, node, keys, slot, "ab" * 32), metadata=op.md)
    )
    assert unasked.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(unasked).reason == "LUCID_ERR_4007"


async def test_an_inactive_node_gets_no_data(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.register(op)
    reply = await kit.nodes.SendHeartbeat(
        npb.SendHeartbeatRequest(node_id=node.node_id), metadata=op.md
    )
    assert not reply.HasField("storage_assignment")
    assert not reply.HasField("storage_challenge")


async def test_a_node_checks_other_nodes_signatures_and_the_decoys_among_them(
    kit: NodesKit,
) -> None:
    CLOCK.offset_s = 0
    op = await kit.operator()
    slot = taskproofs.slot_of(CLOCK.now())
    other, other_keys = await kit.active_node(op)
    beacon = kit.beacon(other, other_keys, slot - 1)  # something to check in slot - 1
    await kit.credits.SubmitWorkProof(beacon, metadata=op.md)
    node, keys = await kit.active_node(op)

    CLOCK.offset_s = -taskproofs.SLOT_S  # the slot before the present: a wrong answer
    task = (await beat(kit, op, node)).validation_task
    assert task.slot == slot - 1
    assert 2 <= len(task.items) <= REAL_ITEMS + 2
    truth = [i.item_id for i in task.items if verifies(i)]
    assert 1 <= len(truth) < len(task.items)  # real signatures and one or two decoys
    db = kit.mesh.servers["nodes"].runtime.datastores.db
    real = {i.signature for i in task.items if i.item_id in truth}
    stored = await db[schema.TASK_PROOFS].find({"signature": {"$in": sorted(real)}}).to_list(None)
    assert {d["signature"] for d in stored} == real  # proofs the chain accepted
    assert node.node_id not in {d["node_id"] for d in stored}  # of other nodes
    assert (await beat(kit, op, node)).validation_task == task  # one task a slot
    every = [i.item_id for i in task.items]  # a node that checks nothing
    error = await refused(
        kit.credits.SubmitWorkProof(validation_proof(kit, node, keys, task, every), metadata=op.md)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error).reason == "LUCID_ERR_1001"
    assert "not the ones that verify" in str(error.details())
    assert not (await beat(kit, op, node)).HasField("validation_task")  # it took its answer
    assert (await credits_of(kit, op, node)).credits == 0  # nothing refused was kept

    CLOCK.offset_s = 0
    task = (await beat(kit, op, node)).validation_task
    assert task.slot == slot
    truth = [i.item_id for i in task.items if verifies(i)]
    on_beacon = kit.beacon(node, keys, slot)
    on_beacon.valid_item_ids.extend(truth)
    misplaced = await refused(kit.credits.SubmitWorkProof(on_beacon, metadata=op.md))
    assert misplaced.code() == grpc.StatusCode.INVALID_ARGUMENT
    accepted = await kit.credits.SubmitWorkProof(
        validation_proof(kit, node, keys, task, truth), metadata=op.md
    )
    assert accepted.credits == pytest.approx(0.3 * len(task.items))
    report = await credits_of(kit, op, node)
    assert [(t.task_type, t.value) for t in report.by_task] == [
        (tpb.TASK_TYPE_VALIDATION_SIGNATURE, len(task.items))
    ]


async def test_a_validation_proof_needs_its_task_and_the_right_count(kit: NodesKit) -> None:
    CLOCK.offset_s = 0
    op = await kit.operator()
    node, keys = await kit.active_node(op)
    slot = taskproofs.slot_of(CLOCK.now())
    unasked = npb.ValidationTask(slot=slot, items=[npb.ValidationItem()])
    none = await refused(
        kit.credits.SubmitWorkProof(validation_proof(kit, node, keys, unasked, []), metadata=op.md)
    )
    assert none.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details(none).reason == "LUCID_ERR_4007"

    task = (await beat(kit, op, node)).validation_task
    assert task.items  # the session's proofs of other nodes
    truth = [i.item_id for i in task.items if verifies(i)]
    padded = npb.ValidationTask(slot=task.slot, items=[*task.items, npb.ValidationItem()])
    miscounted = await refused(
        kit.credits.SubmitWorkProof(
            validation_proof(kit, node, keys, padded, truth), metadata=op.md
        )
    )
    assert miscounted.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"had {len(task.items)} signatures" in str(miscounted.details())
    assert (await credits_of(kit, op, node)).credits == 0


def item_votes(
    node: npb.Node,
    keys: NodeKeys,
    task: npb.ValidationTask,
    valid: list[str],
    *,
    signer: nacl.signing.SigningKey | None = None,
) -> list[tpb.ItemVote]:
    """The node's PoOT vote on each item of its task, as the agent signs them."""
    votes = []
    for item in task.items:
        vote = pootvotes.poot_vote(
            voter_id=node.node_id,
            public_key=keys.public_hex,
            target_id=item.node_id,
            slot=task.slot,
            approve=item.item_id in valid,
            proof_signature=item.signature,
        )
        votes.append(
            tpb.ItemVote(
                item_id=item.item_id, signature=pootvotes.sign(vote, signer or keys.signing)
            )
        )
    return votes


async def chain_votes(kit: NodesKit, voter_id: str) -> list[cpb.ConsensusVote]:
    """The PoOT votes of a voter in final blocks."""
    async with kit.mesh.channel("blockchain", "admin") as channel:
        reply = await ChainStubs(channel).consensus.ListConsensusVotes(
            cpb.ListConsensusVotesRequest(
                vote_type=pb.VOTE_TYPE_POOT_VALIDATION, voter_id=voter_id, page_size=100
            )
        )
    return list(reply.votes)


async def test_a_nodes_verdicts_become_poot_votes_on_the_chain(kit: NodesKit) -> None:
    CLOCK.offset_s = 0
    op = await kit.operator()
    slot = taskproofs.slot_of(CLOCK.now())
    for _ in range(2):  # proofs of other nodes to check
        other, other_keys = await kit.active_node(op)
        await kit.credits.SubmitWorkProof(kit.beacon(other, other_keys, slot), metadata=op.md)
    node, keys = await kit.active_node(op)
    task = (await beat(kit, op, node)).validation_task
    truth = [i.item_id for i in task.items if verifies(i)]
    real = {i.item_id: i.node_id for i in task.items if i.item_id in truth}
    assert len(set(real.values())) == len(real) >= 2  # one proof of each other node
    assert node.node_id not in real.values()

    def proof(votes: list[tpb.ItemVote]) -> tpb.SubmitWorkProofRequest:
        request = validation_proof(kit, node, keys, task, truth)
        request.votes.extend(votes)
        return request

    stranger = nacl.signing.SigningKey.generate()
    forged = await refused(
        kit.credits.SubmitWorkProof(
            proof(item_votes(node, keys, task, truth, signer=stranger)), metadata=op.md
        )
    )
    assert forged.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(forged).reason == "LUCID_ERR_4105"
    partial = await refused(
        kit.credits.SubmitWorkProof(proof(item_votes(node, keys, task, truth)[1:]), metadata=op.md)
    )
    assert partial.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "one per item" in str(partial.details())
    assert (await beat(kit, op, node)).validation_task == task  # neither used up the task
    assert (await credits_of(kit, op, node)).credits == 0

    accepted = await kit.credits.SubmitWorkProof(
        proof(item_votes(node, keys, task, truth)), metadata=op.md
    )
    assert len(accepted.vote_ids) == len(real)  # none on a decoy
    assert accepted.credits == pytest.approx(0.3 * len(task.items))

    async def recorded() -> list[cpb.ConsensusVote] | None:
        votes = await chain_votes(kit, node.node_id)
        return votes if len(votes) == len(real) else None

    votes = await wait_for(recorded, timeout_s=30)
    assert {v.target_id for v in votes} == set(real.values())
    assert all(v.decision == pb.VOTE_DECISION_APPROVE for v in votes)
    assert all(v.slot == task.slot and v.public_key == keys.public_hex for v in votes)


async def test_wrong_verdicts_cost_the_voter_and_only_checked_ones_are_votes(
    kit: NodesKit,
) -> None:
    CLOCK.offset_s = 0
    op = await kit.operator()
    slot = taskproofs.slot_of(CLOCK.now())
    other, other_keys = await kit.active_node(op)
    await kit.credits.SubmitWorkProof(kit.beacon(other, other_keys, slot), metadata=op.md)

    lazy, lazy_keys = await kit.active_node(op)  # judges every item valid, decoys too
    task = (await beat(kit, op, lazy)).validation_task
    every = [i.item_id for i in task.items]
    request = validation_proof(kit, lazy, lazy_keys, task, every)
    request.votes.extend(item_votes(lazy, lazy_keys, task, every))
    error = await refused(kit.credits.SubmitWorkProof(request, metadata=op.md))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error).reason == "LUCID_ERR_1001"

    harsh, harsh_keys = await kit.active_node(op)  # checks the decoys, rejects a real proof
    task = (await beat(kit, op, harsh)).validation_task
    truth = [i.item_id for i in task.items if verifies(i)]
    doubted = next(i for i in task.items if i.item_id == truth[0])
    request = validation_proof(kit, harsh, harsh_keys, task, truth[1:])
    request.votes.extend(item_votes(harsh, harsh_keys, task, truth[1:]))
    error = await refused(kit.credits.SubmitWorkProof(request, metadata=op.md))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not the ones that verify" in str(error.details())
    assert (await credits_of(kit, op, harsh)).credits == 0  # its proof refused

    async def recorded() -> list[cpb.ConsensusVote] | None:
        votes = await chain_votes(kit, harsh.node_id)
        return votes if len(votes) == len(truth) else None

    votes = {v.target_id: v.decision for v in await wait_for(recorded, timeout_s=30)}
    assert votes[doubted.node_id] == pb.VOTE_DECISION_REJECT  # its verdict, on the chain
    assert sorted(votes.values()).count(pb.VOTE_DECISION_APPROVE) == len(truth) - 1
    assert await chain_votes(kit, lazy.node_id) == []  # a voter that missed a decoy
    assert (await credits_of(kit, op, lazy)).credits == 0
