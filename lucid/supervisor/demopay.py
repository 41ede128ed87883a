"""The demo's payout: the nodes cluster pays a dev node on the local TRON network.

As a super admin (a token the supervisor issues, see ``devnodes``) the demo hands one
payout for ``dev-node-1``, to the node's own TRON address, to the nodes cluster's
BatchPayouts. The nodes cluster hands it to the payments cluster (CreatePayout, its
payout id as idempotency key), which signs and broadcasts a USDT-TRC20 transfer on
``lucid devnet tron``; the demo waits until the nodes cluster reports it COMPLETED,
which it does once the payment is confirmed (solid, 19 blocks deep).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from lucid.common.v1 import access_pb2
from lucid.nodes.v1 import nodes_pb2, nodes_pb2_grpc, payout_pb2, payout_pb2_grpc
from lucid.runtime.config import Settings
from lucid.supervisor import devnodes

AMOUNT_MICROS = 10_000_000
POLL_S = 1.0
DONE = frozenset({payout_pb2.PAYOUT_STATE_COMPLETED, payout_pb2.PAYOUT_STATE_FAILED})

Metadata = tuple[tuple[str, str], ...]


async def _bearer(settings: Settings) -> Metadata:
    token = await devnodes.issue(settings, access_pb2.ROLE_SUPER_ADMIN, devnodes.DEV_OPERATOR)
    return (("authorization", f"Bearer {token}"),)


async def _dev_node(
    nodes: nodes_pb2_grpc.NodeServiceStub, md: Metadata, deadline: float
) -> nodes_pb2.Node | None:
    """``dev-node-1`` once it is registered, or None at the deadline."""
    name = devnodes.AGENTS[0]
    while time.monotonic() < deadline:
        listed: nodes_pb2.ListNodesResponse = await nodes.ListNodes(
            nodes_pb2.ListNodesRequest(owner_user_id=devnodes.DEV_OPERATOR, page_size=100),
            metadata=md,
        )
        for node in listed.nodes:
            if node.name == name and node.node_address:
                return node
        await asyncio.sleep(POLL_S)
    return None


async def _settled(
    payouts: payout_pb2_grpc.PayoutServiceStub,
    node_id: str,
    payout_id: str,
    md: Metadata,
    deadline: float,
) -> payout_pb2.Payout | None:
    """The payout once COMPLETED or FAILED, or None at the deadline."""
    while time.monotonic() < deadline:
        listed: payout_pb2.ListNodePayoutsResponse = await payouts.ListNodePayouts(
            payout_pb2.ListNodePayoutsRequest(node_id=node_id, page_size=100), metadata=md
        )
        for payout in listed.payouts:
            if payout.payout_id == payout_id and payout.state in DONE:
                return payout
        await asyncio.sleep(POLL_S)
    return None


async def pay_a_dev_node(
    settings: Settings, say: Callable[[str], None] = print, timeout_s: float = 120.0
) -> bool:
    """BatchPayouts pays ``dev-node-1`` 10 USDT; waits until confirmed on the devnet."""
    started = time.monotonic()
    deadline = started + timeout_s
    md = await _bearer(settings)
    async with devnodes.nodes_channel(settings) as channel:
        node = await _dev_node(nodes_pb2_grpc.NodeServiceStub(channel), md, deadline)
        if node is None:
            say(f"  ✗ no dev node {devnodes.AGENTS[0]} to pay (is `lucid up` running?)")
            return False
        payouts = payout_pb2_grpc.PayoutServiceStub(channel)
        batch = await payouts.BatchPayouts(
            payout_pb2.BatchPayoutsRequest(
                batch_id=str(uuid.uuid4()),
                items=[
                    payout_pb2.PayoutItem(
                        node_id=node.node_id,
                        amount_micros=AMOUNT_MICROS,
                        currency=payout_pb2.PAYOUT_CURRENCY_USDT,
                        wallet_address=node.node_address,
                        reason="lucid demo",
                    )
                ],
            ),
            metadata=md,
        )
        payout = await _settled(payouts, node.node_id, batch.payout_ids[0], md, deadline)
    amount = f"{AMOUNT_MICROS / 1_000_000:.2f} USDT"
    if payout is None:
        say(f"  ✗ the payout of {amount} to {node.name} was not confirmed in {timeout_s:.0f}s")
        return False
    if payout.state != payout_pb2.PAYOUT_STATE_COMPLETED:
        say(f"  ✗ the payout of {amount} to {node.name} failed: {payout.error_message}")
        return False
    say(
        f"  ✓ paid {node.name} {amount} at {node.node_address} (BatchPayouts → payments → "
        f"devnet), confirmed in {time.monotonic() - started:.1f}s: TRON tx {payout.tx_hash}"
    )
    return True
