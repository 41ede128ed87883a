"""The handoff from cluster 05: nodes' BatchPayouts → payments' CreatePayout (idempotency key
= the nodes payout id) → paid on the devnet → confirmed, seen from the nodes cluster."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lucid.common.v1 import access_pb2
from lucid.nodes.v1 import payout_pb2 as ypb
from lucid.payments.v1 import payouts_pb2
from lucid.runtime.config import Settings
from tests.nodes_support import NodesKit, serve_nodes, start_probe
from tests.payments_support import USDT_UNIT, PaymentsBed, new_address, payments_bed, until
from tests.stake_support import StakeNet
from tests.support import Mesh, bearer


@pytest.fixture
async def bed(settings: Settings, mesh: Mesh, tmp_path: Path) -> AsyncIterator[PaymentsBed]:
    async with payments_bed(settings, mesh, tmp_path) as bed:
        yield bed


async def test_a_nodes_batch_is_paid_once_and_confirmed(bed: PaymentsBed) -> None:
    private = bed.mesh
    stakes = StakeNet(bed.devnet)
    await serve_nodes(private, chain=False, stakes=stakes)
    probe = await start_probe(private)
    try:
        admin = bearer(await private.token(role=access_pb2.ROLE_SUPER_ADMIN, ttl_s=3600))
        async with private.channel("nodes") as channel:
            kit = NodesKit(private, channel, probe.port, admin, stakes=stakes)
            op = await kit.operator()
            node, _ = await kit.register(op)
            recipient = new_address()
            request = ypb.BatchPayoutsRequest(
                batch_id=str(uuid.uuid4()),
                items=[
                    ypb.PayoutItem(
                        node_id=node.node_id,
                        amount_micros=25 * USDT_UNIT,
                        currency=ypb.PAYOUT_CURRENCY_USDT,
                        wallet_address=recipient,
                        work_credits=12.5,
                        epoch=700,
                    )
                ],
            )
            reply = await kit.payouts.BatchPayouts(request, metadata=admin)
            (nodes_payout_id,) = reply.payout_ids
            created = await until(
                lambda: bed.stub().ListPayouts(
                    payouts_pb2.ListPayoutsRequest(recipient_address=recipient)
                ),
                lambda listed: listed.total_size == 1,
            )
            payout = created.payouts[0]
            assert payout.idempotency_key == nodes_payout_id
            assert payout.node_id == node.node_id
            assert payout.custom_data["work_credits"] == 12.5
            await bed.until_status(payout.payout_id, payouts_pb2.PAYOUT_STATUS_BROADCAST)
            await bed.mine(20)
            await bed.until_status(payout.payout_id, payouts_pb2.PAYOUT_STATUS_CONFIRMED)
            assert await bed.usdt_of(recipient) == 25 * USDT_UNIT

            async def nodes_view() -> ypb.ListNodePayoutsResponse:
                return await kit.payouts.ListNodePayouts(
                    ypb.ListNodePayoutsRequest(node_id=node.node_id), metadata=op.md
                )

            seen = await until(
                nodes_view,
                lambda listed: listed.payouts[0].state == ypb.PAYOUT_STATE_COMPLETED,
                timeout_s=90,
            )
            assert seen.payouts[0].amount_micros == 25 * USDT_UNIT
            again = await kit.payouts.BatchPayouts(request, metadata=admin)  # idempotent
            assert list(again.payout_ids) == [nodes_payout_id]
            assert await bed.usdt_of(recipient) == 25 * USDT_UNIT
    finally:
        await probe.stop()
        await private.stop("nodes")
