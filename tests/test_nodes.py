"""Cluster 05 over real gRPC and mTLS: registration, lifecycle, pools, PoOT, task proofs
and credits (spec 05 §7 checks 1-10, 13, 14), with FerretDB, Redis and the chain's
in-process validator."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import nacl.signing
import pytest
from google.protobuf import timestamp_pb2

from lucid.blockchain.v1 import consensus_pb2 as cpb
from lucid.lib import taskproofs
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import pool_pb2 as ppb
from lucid.nodes.v1 import poot_pb2 as tpb
from lucid.supervisor.localservers import free_port
from tests.chain_support import ChainStubs, wait_for
from tests.nodes_support import (
    NodeKeys,
    NodesKit,
    OffsetClock,
    Operator,
    audit_events,
    hardware,
    nodes_kit,
    start_probe,
)
from tests.support import Mesh, details

CLOCK = OffsetClock()


@pytest.fixture(scope="module")
async def kit(mesh: Mesh) -> AsyncIterator[NodesKit]:
    async with nodes_kit(mesh, CLOCK) as kit:
        yield kit


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment)
    return out


def output(size: int) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode()


# -- check 1, registration -------------------------------------------------------------------


async def test_a_registered_node_is_inactive_with_a_generated_id(kit: NodesKit) -> None:
    op = await kit.operator()
    keys = NodeKeys()
    challenge = await kit.challenge(op, keys)
    assert challenge.message == (
        f"lucid_node_registration_{challenge.node_id}_{challenge.message.rsplit('_', 1)[1]}"
    )
    reply = await kit.nodes.RegisterNode(kit.register_request(challenge, keys), metadata=op.md)
    node = reply.node
    assert node.node_id == challenge.node_id
    assert node.state == npb.NODE_STATE_INACTIVE
    assert node.owner_user_id == op.user_id
    assert node.node_address == keys.address
    assert node.node_public_key == keys.public_hex
    assert reply.registration.state == npb.REGISTRATION_STATE_APPROVED
    assert reply.registration.verification_score == pytest.approx(0.8)
    assert reply.registration.reachability_verified
    assert reply.registration.stake_verified

    again = await kit.challenge(op, keys)  # the same node address a second time
    error = await refused(kit.nodes.RegisterNode(kit.register_request(again, keys), metadata=op.md))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_a_signature_by_another_key_is_refused_and_creates_nothing(kit: NodesKit) -> None:
    op = await kit.operator()
    keys = NodeKeys()
    challenge = await kit.challenge(op, keys)
    forged = kit.register_request(challenge, NodeKeys())  # signed by another TRON key
    error = await refused(kit.nodes.RegisterNode(forged, metadata=op.md))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(error).reason == "LUCID_ERR_2009"
    missing = await refused(
        kit.nodes.GetNode(npb.GetNodeRequest(node_id=challenge.node_id), metadata=op.md)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    # the challenge is still open: the right signature completes it
    reply = await kit.nodes.RegisterNode(kit.register_request(challenge, keys), metadata=op.md)
    assert reply.node.node_id == challenge.node_id


async def test_five_refused_signatures_in_fifteen_minutes_raise_an_alert(kit: NodesKit) -> None:
    op = await kit.operator()
    keys = NodeKeys()
    challenge = await kit.challenge(op, keys)
    for _ in range(5):
        forged = kit.register_request(challenge, NodeKeys())
        error = await refused(kit.nodes.RegisterNode(forged, metadata=op.md))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    events = await audit_events(kit.mesh, challenge.node_id)
    assert [e["action"] for e in events].count("node.register") == 5
    assert [e["action"] for e in events if "alert" in e["action"]] == ["alert.auth_failures"]


@pytest.mark.parametrize(
    ("hw", "port_open", "failed"),
    [
        (hardware(cores=1), True, "capability"),
        (hardware(storage_gb=40), True, "capability"),
        (hardware(mbps=5), True, "capability"),
        (hardware(), False, "reachability"),
    ],
)
async def test_weak_or_unreachable_nodes_are_rejected(
    kit: NodesKit, hw: npb.HardwareInfo, port_open: bool, failed: str
) -> None:
    op = await kit.operator()
    keys = NodeKeys()
    challenge = await kit.challenge(op, keys)
    port = kit.probe_port if port_open else free_port()
    request = kit.register_request(challenge, keys, hw=hw, port=port)
    error = await refused(kit.nodes.RegisterNode(request, metadata=op.md))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failed in error.details()
    listed = await kit.nodes.ListNodes(npb.ListNodesRequest(), metadata=op.md)
    assert listed.total_size == 0
    [event] = await audit_events(kit.mesh, challenge.node_id)
    assert (event["action"], event["result"]) == ("node.register", "failure")
    assert failed in str(event["reason"])
    assert event["user_id"] == op.user_id


async def test_an_expired_challenge_is_refused(kit: NodesKit) -> None:
    op = await kit.operator()
    keys = NodeKeys()
    challenge = await kit.challenge(op, keys)
    CLOCK.advance(121)
    error = await refused(
        kit.nodes.RegisterNode(kit.register_request(challenge, keys), metadata=op.md)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in error.details()


# -- check 2, lifecycle ----------------------------------------------------------------------


async def test_start_makes_a_node_active_and_start_again_says_already_active(
    kit: NodesKit,
) -> None:
    op = await kit.operator()
    node, _ = await kit.register(op)
    started = await kit.nodes.StartNode(npb.StartNodeRequest(node_id=node.node_id), metadata=op.md)
    assert started.result.state == npb.NODE_STATE_ACTIVE
    assert started.result.node.HasField("last_heartbeat_time")
    events = await audit_events(kit.mesh, node.node_id)
    assert [(e["action"], e["result"]) for e in events] == [
        ("node.register", "success"),
        ("node.start", "success"),
    ]
    again = await kit.nodes.StartNode(npb.StartNodeRequest(node_id=node.node_id), metadata=op.md)
    assert again.result.unchanged
    assert again.result.message == "already active"

    stopped = await kit.nodes.StopNode(npb.StopNodeRequest(node_id=node.node_id), metadata=op.md)
    assert stopped.result.state == npb.NODE_STATE_INACTIVE
    await kit.nodes.UpdateNode(
        npb.UpdateNodeRequest(node_id=node.node_id, state=npb.NODE_STATE_ERROR, reason="disk"),
        metadata=op.md,
    )
    error = await refused(
        kit.nodes.StartNode(npb.StartNodeRequest(node_id=node.node_id), metadata=op.md)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    got = await kit.nodes.GetNode(npb.GetNodeRequest(node_id=node.node_id), metadata=op.md)
    assert got.node.state == npb.NODE_STATE_ERROR


async def test_a_start_whose_agent_does_not_answer_ends_in_error(kit: NodesKit) -> None:
    op = await kit.operator()
    probe = await start_probe(kit.mesh)
    keys = NodeKeys()
    challenge = await kit.challenge(op, keys)
    reply = await kit.nodes.RegisterNode(
        kit.register_request(challenge, keys, port=probe.port), metadata=op.md
    )
    await probe.stop()  # the agent goes away
    result = (
        await kit.nodes.StartNode(npb.StartNodeRequest(node_id=reply.node.node_id), metadata=op.md)
    ).result
    assert result.state == npb.NODE_STATE_ERROR
    assert "did not answer" in result.node.error_message


async def test_operators_see_only_their_own_nodes(kit: NodesKit) -> None:
    owner, other = await kit.operator(), await kit.operator()
    node, _ = await kit.register(owner)
    error = await refused(
        kit.nodes.GetNode(npb.GetNodeRequest(node_id=node.node_id), metadata=other.md)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await refused(
        kit.nodes.StartNode(npb.StartNodeRequest(node_id=node.node_id), metadata=other.md)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    seen = await kit.nodes.GetNode(npb.GetNodeRequest(node_id=node.node_id), metadata=kit.admin)
    assert seen.node.owner_user_id == owner.user_id


async def test_heartbeats_record_samples_and_fleet_health_follows(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.active_node(op)
    beat = await kit.nodes.SendHeartbeat(
        npb.SendHeartbeatRequest(
            node_id=node.node_id,
            sample=npb.NodeResourceSample(cpu_percent=12.5, memory_percent=40, load_average=0.5),
        ),
        metadata=op.md,
    )
    assert beat.state == npb.NODE_STATE_ACTIVE
    assert beat.next_heartbeat_seconds == 30
    resources = await kit.nodes.GetNodeResources(
        npb.GetNodeResourcesRequest(node_id=node.node_id), metadata=op.md
    )
    assert resources.current.cpu_percent == pytest.approx(12.5)
    assert resources.thresholds.heartbeat_timeout_seconds == 300
    metrics = await kit.nodes.GetNodeMetrics(
        npb.GetNodeMetricsRequest(node_id=node.node_id), metadata=op.md
    )
    assert [s.memory_percent for s in metrics.samples] == [40]

    assert not [e for e in await audit_events(kit.mesh, node.node_id) if "alert" in e["action"]]
    await kit.nodes.SendHeartbeat(
        npb.SendHeartbeatRequest(
            node_id=node.node_id, sample=npb.NodeResourceSample(cpu_percent=97, memory_percent=40)
        ),
        metadata=op.md,
    )
    alerts = [e for e in await audit_events(kit.mesh, node.node_id) if "alert" in e["action"]]
    assert [(e["action"], e["cpu_percent"]) for e in alerts] == [("alert.resources", "97.0")]

    fleet = await kit.nodes.GetFleetStatus(npb.GetFleetStatusRequest(), metadata=kit.admin)
    assert fleet.healthy_nodes >= 1
    healthy_before = fleet.healthy_nodes
    CLOCK.advance(301)  # no heartbeat for more than 300 s: unhealthy
    fleet = await kit.nodes.GetFleetStatus(npb.GetFleetStatusRequest(), metadata=kit.admin)
    assert fleet.healthy_nodes == 0 < healthy_before
    assert fleet.health == npb.FLEET_HEALTH_UNHEALTHY
    await kit.nodes.SendHeartbeat(npb.SendHeartbeatRequest(node_id=node.node_id), metadata=op.md)
    fleet = await kit.nodes.GetFleetStatus(npb.GetFleetStatusRequest(), metadata=kit.admin)
    assert fleet.healthy_nodes == 1


async def test_an_allocation_that_does_not_fit_is_resource_exhausted(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.register(op)
    made = await kit.nodes.AllocateNodeResources(
        npb.AllocateNodeResourcesRequest(node_id=node.node_id, cpu_cores=3, purpose="session"),
        metadata=kit.admin,
    )
    assert made.allocation.cpu_cores == 3
    error = await refused(
        kit.nodes.AllocateNodeResources(
            npb.AllocateNodeResourcesRequest(node_id=node.node_id, cpu_cores=2),
            metadata=kit.admin,
        )
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    left = await kit.nodes.GetNodeResources(
        npb.GetNodeResourcesRequest(node_id=node.node_id), metadata=op.md
    )
    assert left.free_cpu_cores == pytest.approx(1)
    assert len(left.allocations) == 1


# -- checks 3 and 4, listing and ids ---------------------------------------------------------


async def test_pages_of_ten_over_fifty_nodes(kit: NodesKit) -> None:
    op = await kit.operator()
    created = [(await kit.register(op, name=f"n{i:02d}"))[0].node_id for i in range(50)]
    first = await kit.nodes.ListNodes(npb.ListNodesRequest(page_size=10), metadata=op.md)
    assert first.total_size == 50
    assert -(-first.total_size // 10) == 5  # pages
    second = await kit.nodes.ListNodes(
        npb.ListNodesRequest(page_size=10, page_token=first.next_page_token), metadata=op.md
    )
    assert [n.node_id for n in second.nodes] == created[10:20]  # offset 10
    error = await refused(
        kit.nodes.ListNodes(npb.ListNodesRequest(page_token="bogus"), metadata=op.md)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("node_id", ["node_01", "node_admin_0000000000000000000000000"])
async def test_malformed_node_ids_are_invalid_arguments(kit: NodesKit, node_id: str) -> None:
    op = await kit.operator()
    error = await refused(kit.nodes.GetNode(npb.GetNodeRequest(node_id=node_id), metadata=op.md))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- check 5, pools --------------------------------------------------------------------------


async def test_a_full_pool_refuses_another_node(kit: NodesKit) -> None:
    op = await kit.operator()
    pool = await kit.pool(max_nodes=2)
    for _ in range(2):
        node, _ = await kit.register(op)
        await kit.pools.AddPoolNode(
            ppb.AddPoolNodeRequest(pool_id=pool.pool_id, node_id=node.node_id), metadata=kit.admin
        )
    extra, _ = await kit.register(op)
    error = await refused(
        kit.pools.AddPoolNode(
            ppb.AddPoolNodeRequest(pool_id=pool.pool_id, node_id=extra.node_id),
            metadata=kit.admin,
        )
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    moved = await refused(
        kit.nodes.UpdateNode(
            npb.UpdateNodeRequest(node_id=extra.node_id, pool_id=pool.pool_id), metadata=op.md
        )
    )
    assert moved.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    keys = NodeKeys()
    challenge = await kit.challenge(op, keys)
    joining = await refused(
        kit.nodes.RegisterNode(
            kit.register_request(challenge, keys, pool_id=pool.pool_id), metadata=op.md
        )
    )
    assert joining.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    got = await kit.pools.GetPool(ppb.GetPoolRequest(pool_id=pool.pool_id), metadata=op.md)
    assert got.pool.node_count == 2
    assert got.pool.state == ppb.POOL_STATE_FORMING


async def test_a_pool_is_active_at_three_active_members_and_degraded_below(kit: NodesKit) -> None:
    op = await kit.operator()
    pool = await kit.pool()
    nodes = [(await kit.active_node(op, pool_id=pool.pool_id))[0] for _ in range(3)]
    got = await kit.pools.GetPool(ppb.GetPoolRequest(pool_id=pool.pool_id), metadata=op.md)
    assert (got.pool.state, got.pool.active_node_count) == (ppb.POOL_STATE_ACTIVE, 3)
    await kit.nodes.StopNode(npb.StopNodeRequest(node_id=nodes[0].node_id), metadata=op.md)
    got = await kit.pools.GetPool(ppb.GetPoolRequest(pool_id=pool.pool_id), metadata=op.md)
    assert got.pool.state == ppb.POOL_STATE_DEGRADED
    duplicate = await refused(
        kit.pools.CreatePool(ppb.CreatePoolRequest(name=got.pool.name), metadata=kit.admin)
    )
    assert duplicate.code() == grpc.StatusCode.ALREADY_EXISTS


# -- checks 6 to 9, PoOT ---------------------------------------------------------------------


async def test_rejections_are_refused_and_stored_with_score_zero(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.active_node(op)
    idle, _ = await kit.register(op)
    now = CLOCK.now()
    nonce = secrets.token_hex(16)
    cases = [
        (node.node_id, output(100), now - timedelta(hours=25), nonce),  # stale
        (node.node_id, output(100), now + timedelta(minutes=5), nonce),  # future
        (node.node_id, output(1024 * 1024 + 1), now, nonce),  # over 1 MiB
        (node.node_id, "not base64!", now, nonce),
        (node.node_id, output(100), now, "short"),  # nonce under 8
        (idle.node_id, output(100), now, nonce),  # inactive node
    ]
    for node_id, data, when, used_nonce in cases:
        error = await refused(
            kit.poot.ValidatePoot(
                tpb.ValidatePootRequest(
                    node_id=node_id, output_data=data, output_time=stamp(when), nonce=used_nonce
                ),
                metadata=op.md,
            )
        )
        assert error.code() in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
        )
    history = await kit.poot.GetPootHistory(
        tpb.GetPootHistoryRequest(node_id=node.node_id), metadata=op.md
    )
    assert history.total_size == 5
    assert {v.score for v in history.validations} == {0.0}
    assert all(v.errors for v in history.validations)
    idle_history = await kit.poot.GetPootHistory(
        tpb.GetPootHistoryRequest(node_id=idle.node_id), metadata=op.md
    )
    assert [v.errors[0] for v in idle_history.validations] == [f"node {idle.node_id} is not active"]


async def test_a_fresh_20kb_output_with_a_random_nonce_is_valid_and_a_reused_nonce_is_not(
    kit: NodesKit,
) -> None:
    op = await kit.operator()
    node, _ = await kit.active_node(op)
    nonce = secrets.token_hex(16)  # 32 random characters
    request = tpb.ValidatePootRequest(
        node_id=node.node_id,
        output_data=output(20 * 1024),
        output_time=stamp(CLOCK.now()),
        nonce=nonce,
    )
    first = (await kit.poot.ValidatePoot(request, metadata=op.md)).validation
    assert first.status == tpb.POOT_STATUS_VALID
    assert first.score >= 70
    assert first.confidence == pytest.approx(0.5)  # no history
    assert first.breakdown.reliability == pytest.approx(12.5)
    assert first.output_hash == hashlib.sha256(request.output_data.encode()).hexdigest()

    again = (await kit.poot.ValidatePoot(request, metadata=op.md)).validation
    assert again.score >= 70
    assert again.status == tpb.POOT_STATUS_INVALID  # the nonce was used within 24 h
    score = await kit.poot.GetPootScore(
        tpb.GetPootScoreRequest(node_id=node.node_id), metadata=op.md
    )
    assert score.status == tpb.POOT_STATUS_INVALID
    assert score.latest.validation_id == again.validation_id


async def test_a_batch_with_one_failing_item_counts_one_error(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.active_node(op)
    now = stamp(CLOCK.now())
    items = [
        tpb.BatchPootItem(
            node_id=node.node_id,
            output_data=output(20 * 1024),
            output_time=now,
            nonce=secrets.token_hex(16),
        )
        for _ in range(3)
    ]
    items[1].output_data = "%%% not base64 %%%"
    reply = await kit.poot.BatchValidatePoot(
        tpb.BatchValidatePootRequest(items=items), metadata=kit.admin
    )
    assert (reply.summary.total, reply.summary.errors) == (3, 1)
    assert reply.summary.valid + reply.summary.invalid == 2
    assert reply.results[1].error and not reply.results[1].HasField("validation")
    assert reply.results[0].validation.batch_id == reply.batch_id


# -- check 10, task proofs and credits --------------------------------------------------------


async def test_proofs_reach_the_chain_duplicates_are_refused_and_credits_add_up(
    kit: NodesKit,
) -> None:
    CLOCK.offset_s = 0  # proofs of the real present, so the chain's window holds them
    op = await kit.operator()
    node, keys = await kit.active_node(op)
    slot = taskproofs.slot_of(CLOCK.now())
    accepted = await kit.credits.SubmitWorkProof(kit.beacon(node, keys, slot), metadata=op.md)
    assert accepted.credits == pytest.approx(0.1)
    assert accepted.epoch == taskproofs.epoch_of(slot)
    previous = await kit.credits.SubmitWorkProof(kit.beacon(node, keys, slot - 1), metadata=op.md)
    assert previous.proof_id != accepted.proof_id

    duplicate = await refused(
        kit.credits.SubmitWorkProof(kit.beacon(node, keys, slot), metadata=op.md)
    )
    assert duplicate.code() == grpc.StatusCode.ALREADY_EXISTS
    forged = await refused(
        kit.credits.SubmitWorkProof(
            kit.beacon(node, keys, slot, signer=nacl.signing.SigningKey.generate()),
            metadata=op.md,
        )
    )
    assert forged.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(forged).reason == "LUCID_ERR_4105"
    stale = await refused(
        kit.credits.SubmitWorkProof(kit.beacon(node, keys, slot - 5), metadata=op.md)
    )
    assert stale.code() == grpc.StatusCode.INVALID_ARGUMENT

    report = await kit.credits.GetWorkCredits(
        tpb.GetWorkCreditsRequest(node_id=node.node_id), metadata=op.md
    )
    assert report.credits == pytest.approx(2 * 0.1)  # two beacons x (120 s / 120) x 0.1
    assert report.live_score == pytest.approx(2 / 720)
    assert [(t.task_type, t.value) for t in report.by_task] == [(tpb.TASK_TYPE_UPTIME_BEACON, 240)]
    assert report.rank >= 1

    async def on_chain() -> list[str] | None:  # once a final block holds the proofs
        async with kit.mesh.channel("blockchain") as channel:
            tallies = await ChainStubs(channel).consensus.GetWorkCredits(
                cpb.GetWorkCreditsRequest(entity_id=node.node_id), metadata=kit.admin
            )
        return [t.entity_id for t in tallies.tallies] or None

    assert await wait_for(on_chain, timeout_s=30) == [node.node_id]


async def test_the_chain_itself_refuses_a_proof_signed_by_another_key(kit: NodesKit) -> None:
    op = await kit.operator()
    node, keys = await kit.active_node(op)
    slot = taskproofs.slot_of(datetime.now(UTC))
    proof = taskproofs.task_proof(
        node_id=node.node_id,
        pool_id="",
        slot=slot,
        task_type=tpb.TASK_TYPE_UPTIME_BEACON,
        value=60,
        public_key=keys.public_hex,
    )
    proof.signature = taskproofs.sign(proof, nacl.signing.SigningKey.generate())
    async with kit.mesh.channel("blockchain") as channel:
        error = await refused(
            ChainStubs(channel).consensus.SubmitTaskProof(
                cpb.SubmitTaskProofRequest(proof=proof), metadata=op.md
            )
        )
    assert details(error).reason == "LUCID_ERR_4105"


# -- checks 13 and 14, limits and access -----------------------------------------------------


async def test_the_101st_poot_call_in_a_minute_is_resource_exhausted(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.active_node(op)
    request = tpb.ValidatePootRequest(
        node_id=node.node_id, output_data=output(10), output_time=stamp(CLOCK.now()), nonce="x"
    )
    for _ in range(100):
        error = await refused(kit.poot.ValidatePoot(request, metadata=op.md))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # counted, then rejected
    error = await refused(kit.poot.ValidatePoot(request, metadata=op.md))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(error).retry_after_s is not None


async def test_no_token_is_unauthenticated_and_a_worker_may_not_create_pools(
    kit: NodesKit,
) -> None:
    error = await refused(kit.nodes.ListNodes(npb.ListNodesRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    worker: Operator = await kit.operator()
    error = await refused(
        kit.pools.CreatePool(ppb.CreatePoolRequest(name="workers-pool"), metadata=worker.md)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
