"""Payouts of cluster 05 (spec 05 §7 checks 11 and 12 up to the handoff): refused items,
a batch answered at once and kept idempotent, payouts waiting while the payments
cluster does not answer, cancellation, ownership; and the epoch arithmetic of what
nodes are owed. The handoff to a running payments cluster is not exercised here."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from pymongo.errors import AutoReconnect
from tronpy.keys import PrivateKey

from lucid.lib import taskproofs, tron
from lucid.nodes import owed, schema
from lucid.nodes.alerts import Alerts
from lucid.nodes.callers import Caller
from lucid.nodes.epochs import EpochPayouts
from lucid.nodes.payments import PaymentsClient
from lucid.nodes.payouts import PayoutItem, Payouts
from lucid.nodes.schedule import Schedule
from lucid.nodes.store.nodes import NodeStore
from lucid.nodes.store.payouts import PayoutStore
from lucid.nodes.store.pools import PoolStore
from lucid.nodes.store.proofs import ProofRecord, ProofStore
from lucid.nodes.v1 import payout_pb2 as ypb
from lucid.nodes.v1 import pool_pb2 as ppb
from lucid.nodes.v1 import poot_pb2 as tpb
from lucid.runtime import wire
from lucid.runtime.audit import AuditTrail
from lucid.runtime.errors import ErrorCode, LucidError
from tests.chain_support import wait_for
from tests.nodes_support import NodesKit, audit_events, nodes_kit
from tests.support import Mesh, details

USDT = 1_000_000


@pytest.fixture(scope="module")
async def kit(mesh: Mesh) -> AsyncIterator[NodesKit]:
    # Payments is up only while a node registers (its stake is verified).
    async with nodes_kit(mesh, chain=False, payments_only_to_register=True) as kit:
        yield kit


def wallet() -> str:
    return str(PrivateKey.random().public_key.to_base58check_address())


def item(node_id: str, amount: int = 25 * USDT, address: str = "") -> ypb.PayoutItem:
    return ypb.PayoutItem(
        node_id=node_id,
        amount_micros=amount,
        currency=ypb.PAYOUT_CURRENCY_USDT,
        wallet_address=address or wallet(),
        work_credits=12.5,
        epoch=700,
    )


def with_bad_checksum(address: str) -> str:
    last = address[-1]
    return address[:-1] + ("2" if last != "2" else "3")


def blacklisted() -> str:
    return tron.encode_address(bytes([0x41]) + bytes.fromhex("12345678") + secrets.token_bytes(16))


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


@pytest.mark.parametrize(
    ("amount", "address"),
    [
        (0, ""),  # nothing
        (1_000_001 * USDT, ""),  # over 1,000,000 USDT
        (25 * USDT + 1, ""),  # 6 decimals where cluster 07 pays cents
        (25 * USDT, "bad"),  # not an address
        (25 * USDT, "checksum"),
        (25 * USDT, "blacklisted"),
    ],
)
async def test_bad_items_are_invalid_arguments_and_store_nothing(
    kit: NodesKit, amount: int, address: str
) -> None:
    op = await kit.operator()
    node, _ = await kit.register(op)
    target = {
        "": "",
        "bad": "T" + "1" * 33,
        "checksum": with_bad_checksum(wallet()),
        "blacklisted": blacklisted(),
    }[address]
    batch_id = str(uuid.uuid4())
    error = await refused(
        kit.payouts.BatchPayouts(
            ypb.BatchPayoutsRequest(batch_id=batch_id, items=[item(node.node_id, amount, target)]),
            metadata=kit.admin,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error).field_violations
    missing = await refused(
        kit.payouts.GetPayoutBatch(ypb.GetPayoutBatchRequest(batch_id=batch_id), metadata=kit.admin)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_a_batch_is_queued_at_once_and_waits_for_the_payments_cluster(
    kit: NodesKit,
) -> None:
    op = await kit.operator()
    node, _ = await kit.register(op)
    batch_id = str(uuid.uuid4())
    request = ypb.BatchPayoutsRequest(
        batch_id=batch_id, items=[item(node.node_id), item(node.node_id, 11 * USDT)]
    )
    reply = await kit.payouts.BatchPayouts(request, metadata=kit.admin)
    assert reply.state == ypb.PAYOUT_BATCH_STATE_QUEUED
    assert len(reply.payout_ids) == 2
    assert reply.HasField("estimated_completion_time")
    again = await kit.payouts.BatchPayouts(request, metadata=kit.admin)  # idempotent
    assert list(again.payout_ids) == list(reply.payout_ids)

    async def retried() -> ypb.ListNodePayoutsResponse | None:
        listed = await kit.payouts.ListNodePayouts(
            ypb.ListNodePayoutsRequest(node_id=node.node_id), metadata=op.md
        )
        return listed if all(p.retry_count >= 1 for p in listed.payouts) else None

    listed = await wait_for(retried, timeout_s=20)
    assert {p.state for p in listed.payouts} == {ypb.PAYOUT_STATE_PENDING}
    assert all("payments unavailable" in p.error_message for p in listed.payouts)
    assert {p.amount_micros for p in listed.payouts} == {25 * USDT, 11 * USDT}

    batch = await kit.payouts.GetPayoutBatch(
        ypb.GetPayoutBatchRequest(batch_id=batch_id), metadata=kit.admin
    )
    assert (batch.batch.payout_count, batch.batch.total_amount_micros) == (2, 36 * USDT)

    cancelled = await kit.payouts.CancelNodePayout(
        ypb.CancelNodePayoutRequest(payout_id=reply.payout_ids[0], reason="wrong wallet"),
        metadata=kit.admin,
    )
    assert cancelled.payout.state == ypb.PAYOUT_STATE_CANCELLED
    error = await refused(
        kit.payouts.CancelNodePayout(
            ypb.CancelNodePayoutRequest(payout_id=reply.payout_ids[0]), metadata=kit.admin
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    stranger = await kit.operator()
    theirs = await kit.payouts.ListNodePayouts(
        ypb.ListNodePayoutsRequest(node_id=node.node_id), metadata=stranger.md
    )
    assert theirs.total_size == 0
    history = await kit.payouts.GetPayoutHistory(
        ypb.GetPayoutHistoryRequest(node_id=node.node_id), metadata=op.md
    )
    assert (history.total_size, history.total_paid_micros) == (2, 0)


async def test_frequent_and_outsized_payouts_raise_alerts(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.register(op)
    first = await kit.payouts.BatchPayouts(
        ypb.BatchPayoutsRequest(batch_id=str(uuid.uuid4()), items=[item(node.node_id, USDT)]),
        metadata=kit.admin,
    )
    assert not [e for e in await audit_events(kit.mesh, node.node_id) if "alert" in e["action"]]
    second = await kit.payouts.BatchPayouts(
        ypb.BatchPayoutsRequest(
            batch_id=str(uuid.uuid4()),
            items=[item(node.node_id, 20 * USDT), item(node.node_id, USDT)],
        ),
        metadata=kit.admin,
    )
    frequency = [e for e in await audit_events(kit.mesh, node.node_id) if "alert" in e["action"]]
    assert [e["action"] for e in frequency] == ["alert.payout_frequency"]
    outsized = await audit_events(kit.mesh, second.payout_ids[0])
    assert [e["action"] for e in outsized] == ["alert.payout_outlier"]
    assert not await audit_events(kit.mesh, first.payout_ids[0])


async def test_operators_may_not_batch_payouts(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.register(op)
    error = await refused(
        kit.payouts.BatchPayouts(
            ypb.BatchPayoutsRequest(batch_id=str(uuid.uuid4()), items=[item(node.node_id)]),
            metadata=op.md,
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_schedule_has_defaults_and_can_be_changed(kit: NodesKit) -> None:
    schedule = await kit.payouts.GetPayoutSchedule(
        ypb.GetPayoutScheduleRequest(), metadata=kit.admin
    )
    assert schedule.schedule.minimum_payout_micros == 10 * USDT
    assert schedule.schedule.commission_percent == pytest.approx(5)
    changed = await kit.payouts.UpdatePayoutSchedule(
        ypb.UpdatePayoutScheduleRequest(enabled=True, epoch_budget_micros=5_000 * USDT),
        metadata=kit.admin,
    )
    assert changed.schedule.enabled
    assert changed.schedule.epoch_budget_micros == 5_000 * USDT


def server_db(kit: NodesKit) -> Any:
    """The running nodes server's database."""
    return kit.mesh.servers["nodes"].runtime.datastores.db


def epoch_runner(kit: NodesKit) -> EpochPayouts:
    """The epoch run on the running server's stores (its loop runs it only when enabled)."""
    runtime = kit.mesh.servers["nodes"].runtime
    db = server_db(kit)
    store = PayoutStore(db[schema.PAYOUTS], db[schema.PAYOUT_BATCHES], db[schema.PAYOUT_SCHEDULE])
    audit = AuditTrail(db[schema.AUDIT], runtime.clock)
    nodes = NodeStore(db[schema.NODES])
    payouts = Payouts(
        store, nodes, PaymentsClient(runtime.channels), audit, runtime.clock, Alerts(audit)
    )
    return EpochPayouts(
        nodes,
        ProofStore(db[schema.TASK_PROOFS]),
        payouts,
        Schedule(store, audit, runtime.clock),
        runtime.clock,
        pools=PoolStore(db[schema.POOLS]),
    )


def test_each_valid_node_is_owed_its_share_and_small_amounts_carry_over() -> None:
    result = owed.owed(
        1_000 * USDT,
        {"a": 60.0, "b": 39.0, "c": 1.0, "d": 50.0},
        valid={"a", "b", "c"},  # d's latest PoOT is invalid
        carried={"c": 5 * USDT, "e": 3 * USDT},
    )
    assert result.pay == {"a": 600 * USDT, "b": 390 * USDT, "c": 15 * USDT}
    assert result.carry == {"e": 3 * USDT}  # under 10 USDT: carried again


def test_a_pools_share_is_split_by_its_mode() -> None:
    credits = {"x": 3.0, "y": 1.0, "z": 4.0, "solo": 2.0}
    valid = set(credits)
    budget = 1_000 * USDT

    def pool(mode: int) -> list[owed.PoolSplit]:
        return [owed.PoolSplit("p", ["x", "y", "z"], mode)]

    equal = owed.pooled(budget, credits, valid, pool(ppb.REWARD_SPLIT_EQUAL), {})
    assert equal == pytest.approx({"x": 8 / 3, "y": 8 / 3, "z": 8 / 3, "solo": 2.0})
    assert owed.pooled(budget, credits, valid, pool(ppb.REWARD_SPLIT_WORK_CREDITS), {}) == credits
    weighted = owed.pooled(
        budget,
        credits,
        valid,
        pool(ppb.REWARD_SPLIT_CONTRIBUTION_WEIGHTED),
        {"x": 1.0, "y": 0.5, "z": 0.5},
    )
    assert weighted == pytest.approx({"x": 4.0, "y": 2.0, "z": 2.0, "solo": 2.0})
    # Σ credits is kept: the pool gets 80 %, split equally; the other node its own 20 %
    paid = owed.owed(budget, equal, valid, {}).pay
    assert paid["solo"] == 200 * USDT
    assert paid["x"] == paid["y"] == paid["z"] == 266_660_000
    # a member whose latest PoOT is invalid neither shares nor adds to the pool
    without_z = owed.pooled(budget, credits, {"x", "y", "solo"}, pool(ppb.REWARD_SPLIT_EQUAL), {})
    assert without_z == pytest.approx({"x": 2.0, "y": 2.0, "z": 4.0, "solo": 2.0})
    assert "z" not in owed.owed(budget, without_z, {"x", "y", "solo"}, {}).pay
    # a pool holding under 1 USDT is not split
    small = owed.pooled(USDT, credits, valid, pool(ppb.REWARD_SPLIT_EQUAL), {})
    assert small == credits


def test_contribution_weighs_uptime_and_sessions() -> None:
    assert owed.contribution(1.0, 100) == pytest.approx(1.0)
    assert owed.contribution(0.5, 50) == pytest.approx(0.35 + 0.15)
    assert owed.contribution(2.0, 1_000) == pytest.approx(1.0)  # each part capped


async def test_an_epoch_pays_valid_nodes_their_share_of_the_budget_once(kit: NodesKit) -> None:
    op = await kit.operator()
    nodes = [(await kit.active_node(op))[0] for _ in range(3)]
    now = datetime.now(UTC)
    for node, size in zip(nodes, (20 * 1024, 20 * 1024, 100), strict=True):
        await kit.poot.ValidatePoot(  # the third output is too small: its PoOT is invalid
            tpb.ValidatePootRequest(
                node_id=node.node_id,
                output_data=base64.b64encode(secrets.token_bytes(size)).decode(),
                output_time=wire.timestamp(now),
                nonce=secrets.token_hex(16),
            ),
            metadata=op.md,
        )
    # Proofs the chain accepted, as the store records them (3, 1 and 2 beacons).
    proofs = ProofStore(server_db(kit)[schema.TASK_PROOFS])
    slot = taskproofs.slot_of(now)
    for node, beacons in zip(nodes, (3, 1, 2), strict=True):
        for back in range(beacons):
            await proofs.insert(
                ProofRecord(
                    proof_id=str(uuid.uuid4()),
                    node_id=node.node_id,
                    pool_id="",
                    slot=slot - back,
                    task_type=tpb.TASK_TYPE_UPTIME_BEACON,
                    value=120.0,
                    proof_time=taskproofs.slot_start(slot - back),
                    signature="00" * 64,
                )
            )
    await kit.payouts.UpdatePayoutSchedule(
        ypb.UpdatePayoutScheduleRequest(epoch_budget_micros=1_000_000 * USDT),
        metadata=kit.admin,
    )
    runner = epoch_runner(kit)
    epoch = taskproofs.epoch_of(slot)
    first = await runner.run(epoch, Caller.cluster())
    assert first.batch is not None
    paid = {p.node_id: p for p in first.batch.payouts}
    a, b, c = (n.node_id for n in nodes)
    assert c not in paid  # its latest PoOT is invalid
    assert paid[a].amount_micros == 3 * paid[b].amount_micros
    assert paid[a].wallet_address == nodes[0].node_address
    assert paid[a].epoch == epoch
    again = await runner.run(epoch, Caller.cluster())
    assert again.batch is not None
    assert again.batch.batch.batch_id == first.batch.batch.batch_id
    assert {p.payout_id for p in again.batch.payouts} == {p.payout_id for p in first.batch.payouts}


async def test_an_epoch_splits_a_pools_share_equally_among_its_members(kit: NodesKit) -> None:
    op = await kit.operator()
    pool = await kit.pool()
    assert pool.reward_split == ppb.REWARD_SPLIT_EQUAL  # the default of a new pool
    members = [(await kit.active_node(op, pool_id=pool.pool_id))[0] for _ in range(3)]
    solo, _ = await kit.active_node(op)
    now = datetime.now(UTC)
    for node in [*members, solo]:
        await kit.poot.ValidatePoot(
            tpb.ValidatePootRequest(
                node_id=node.node_id,
                output_data=base64.b64encode(secrets.token_bytes(20 * 1024)).decode(),
                output_time=wire.timestamp(now),
                nonce=secrets.token_hex(16),
            ),
            metadata=op.md,
        )
    # An epoch two ahead (the other epoch test ran this one): its window holds these.
    epoch = taskproofs.epoch_of(taskproofs.slot_of(now)) + 2
    slot = (epoch + 1) * taskproofs.EPOCH_SLOTS - 1
    proofs = ProofStore(server_db(kit)[schema.TASK_PROOFS])
    for node, beacons in zip([*members, solo], (3, 1, 2, 2), strict=True):
        for back in range(beacons):
            await proofs.insert(
                ProofRecord(
                    proof_id=str(uuid.uuid4()),
                    node_id=node.node_id,
                    pool_id=node.pool_id,
                    slot=slot - back,
                    task_type=tpb.TASK_TYPE_UPTIME_BEACON,
                    value=120.0,
                    proof_time=taskproofs.slot_start(slot - back),
                    signature="00" * 64,
                )
            )
    await kit.payouts.UpdatePayoutSchedule(
        ypb.UpdatePayoutScheduleRequest(epoch_budget_micros=1_000_000 * USDT),
        metadata=kit.admin,
    )
    run = await epoch_runner(kit).run(epoch, Caller.cluster())
    assert run.batch is not None
    paid = {p.node_id: p for p in run.batch.payouts}
    amounts = {paid[n.node_id].amount_micros for n in [*members, solo]}
    # the pool's 6 beacons against the solo node's 2: each member a third of 3x the solo's
    assert len(amounts) == 1
    credited = [paid[n.node_id].work_credits for n in members]  # each its own credits
    assert credited == pytest.approx([0.3, 0.1, 0.2])


class CutOff:
    """The payouts collection of a store that crashes half way through writing a batch:
    it stores the first ``keep`` payouts, then the connection is lost."""

    def __init__(self, collection: Any, keep: int) -> None:
        self._collection = collection
        self._keep = keep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    async def insert_many(self, docs: list[dict[str, Any]], **options: Any) -> None:
        await self._collection.insert_many(docs[: self._keep], **options)
        raise AutoReconnect("connection lost half way")


async def test_a_batch_cut_off_half_way_is_held_then_resumed_without_paying_twice(
    kit: NodesKit,
) -> None:
    op = await kit.operator()
    nodes = [(await kit.register(op))[0] for _ in range(2)]
    runtime = kit.mesh.servers["nodes"].runtime
    db = server_db(kit)
    audit = AuditTrail(db[schema.AUDIT], runtime.clock)

    # The batches of this test in a collection of their own, so that the running
    # server's handoff loop (which finishes interrupted batches) does not race it.
    batches = db[f"test_cut_batches_{uuid.uuid4().hex}"]

    def payouts_on(payouts_collection: Any) -> Payouts:
        store = PayoutStore(payouts_collection, batches, db[schema.PAYOUT_SCHEDULE])
        return Payouts(
            store,
            NodeStore(db[schema.NODES]),
            PaymentsClient(runtime.channels),
            audit,
            runtime.clock,
            Alerts(audit),
        )

    items = [
        PayoutItem(n.node_id, (20 + i) * USDT, ypb.PAYOUT_CURRENCY_USDT, wallet())
        for i, n in enumerate(nodes * 2)
    ]
    store = payouts_on(db[schema.PAYOUTS]).store
    for batch_id, resume in ((str(uuid.uuid4()), "submit"), (str(uuid.uuid4()), "recover")):
        with pytest.raises(LucidError) as crash:
            await payouts_on(CutOff(db[schema.PAYOUTS], keep=2)).submit(
                batch_id, items, Caller.cluster()
            )
        assert crash.value.code == ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE
        written = await store.of_batch(batch_id)
        assert len(written) == 2
        pending = {p.payout_id for p in await store.in_state(ypb.PAYOUT_STATE_PENDING, 10_000)}
        assert not pending & {p.payout_id for p in written}  # held: no handoff takes them
        assert batch_id in await store.unfinished_batches()

        if resume == "submit":  # the same batch asked for again
            view = await payouts_on(db[schema.PAYOUTS]).submit(batch_id, items, Caller.cluster())
            assert len(view.payouts) == 4
        else:  # the handoff loop's recovery
            assert await payouts_on(db[schema.PAYOUTS]).recover() >= 1
        stored = await db[schema.PAYOUTS].find({"batch_id": batch_id}).to_list(None)
        assert len(stored) == 4  # each payout once: the two written first were not doubled
        assert sorted(d["amount_micros"] for d in stored) == [
            20 * USDT,
            21 * USDT,
            22 * USDT,
            23 * USDT,
        ]
        assert {p.payout_id for p in written} <= {d["_id"] for d in stored}
        assert not [d for d in stored if "held" in d]
        assert batch_id not in await store.unfinished_batches()
        batch = await store.batch(batch_id)
        assert batch is not None
        assert sorted(batch.payout_ids) == sorted(d["_id"] for d in stored)
    await batches.drop()
