"""Registration stakes (spec 05 §4 "Stake: verify stake_txid through cluster 07"), over real
gRPC and mTLS: RegisterNode asks the real payments cluster's VerifyStake, which reads the
stake transaction from a real devnet process. A verified stake approves; each refusal
(not confirmed yet, unknown, another recipient, too little, not USDT, failed, paid by
another address, already used, payments unreachable) has its code and stores nothing:
no node, no ended registration, no stake claim, and the challenge stays open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from tronpy.keys import PrivateKey

from lucid.nodes import schema
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.runtime.datastores import Datastores
from tests.nodes_support import NodeKeys, NodesKit, Operator, nodes_kit
from tests.stake_support import (
    STAKE_ADDRESS,
    STAKE_MICROS,
    StakeNet,
    payments_stopped,
    session_net,
)
from tests.support import Mesh, details


@pytest.fixture(scope="module")
async def kit(mesh: Mesh) -> AsyncIterator[NodesKit]:
    async with nodes_kit(mesh, chain=False, stakes=session_net()) as kit:
        yield kit


@pytest.fixture(scope="module")
async def stores(mesh: Mesh) -> AsyncIterator[Datastores]:
    found = Datastores(mesh.settings, mongo=True, redis=True)
    yield found
    await found.close()


@pytest.fixture
def net(kit: NodesKit) -> StakeNet:
    assert kit.stakes is not None
    return kit.stakes


async def stored(stores: Datastores, challenge: npb.IssueRegistrationChallengeResponse) -> Any:
    """What the nodes cluster keeps of a registration: node, ended registration, stakes."""
    db = stores.db
    return (
        await db[schema.NODES].find_one({"_id": challenge.node_id}),
        await db[schema.REGISTRATIONS].find_one({"_id": challenge.registration_id}),
        await db[schema.STAKES].count_documents({"node_id": challenge.node_id}),
    )


async def refused_with(
    kit: NodesKit,
    stores: Datastores,
    op: Operator,
    keys: NodeKeys,
    stake_tx: str,
    *,
    status: grpc.StatusCode,
    reason: str,
    stake_micros: int = STAKE_MICROS,
) -> tuple[npb.IssueRegistrationChallengeResponse, grpc.aio.AioRpcError]:
    """Registers with ``stake_tx``; asserts the refusal and that nothing was stored."""
    challenge = await kit.challenge(op, keys)
    request = kit.register_request(challenge, keys, stake_tx=stake_tx, stake_micros=stake_micros)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await kit.nodes.RegisterNode(request, metadata=op.md)
    error = info.value
    assert error.code() == status, error.details()
    assert details(error).reason == reason
    assert await stored(stores, challenge) == (None, None, 0)
    return challenge, error


async def test_a_verified_stake_approves_and_is_recorded(
    kit: NodesKit, stores: Datastores, net: StakeNet
) -> None:
    op = await kit.operator()
    keys = NodeKeys()
    tx = net.pay(keys.tron, 150 * 1_000_000)
    challenge = await kit.challenge(op, keys)
    reply = await kit.nodes.RegisterNode(
        kit.register_request(challenge, keys, stake_tx=tx, stake_micros=STAKE_MICROS),
        metadata=op.md,
    )
    assert reply.registration.state == npb.REGISTRATION_STATE_APPROVED
    assert reply.registration.stake_verified
    assert reply.node.stake_amount_micros == 150 * 1_000_000  # what was paid, ≥ declared
    node, registration, claims = await stored(stores, challenge)
    assert node is not None
    assert registration["stake_verified"] and registration["stake_tx_hash"] == tx
    assert claims == 1
    claim = await stores.db[schema.STAKES].find_one({"_id": tx})
    assert claim is not None
    assert claim["node_address"] == keys.address


async def test_a_stake_not_solid_yet_is_refused_until_it_is(
    kit: NodesKit, stores: Datastores, net: StakeNet
) -> None:
    op = await kit.operator()
    keys = NodeKeys()
    tx = net.pay(keys.tron, solid=False)  # broadcast, not mined
    challenge, error = await refused_with(
        kit,
        stores,
        op,
        keys,
        tx,
        status=grpc.StatusCode.FAILED_PRECONDITION,
        reason="LUCID_ERR_4601",
    )
    assert details(error).retry_after_s
    assert "unknown" in (error.details() or "")
    net.mine(1)  # mined, not solid
    request = kit.register_request(challenge, keys, stake_tx=tx)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await kit.nodes.RegisterNode(request, metadata=op.md)
    assert details(info.value).reason == "LUCID_ERR_4601"
    assert "not in a solid block" in (info.value.details() or "")
    assert await stored(stores, challenge) == (None, None, 0)
    net.mine()  # solid now: the same open challenge completes
    reply = await kit.nodes.RegisterNode(request, metadata=op.md)
    assert reply.node.node_id == challenge.node_id
    assert reply.registration.stake_verified


async def test_an_unknown_transaction_is_not_confirmed(
    kit: NodesKit, stores: Datastores, net: StakeNet
) -> None:
    await refused_with(
        kit,
        stores,
        await kit.operator(),
        NodeKeys(),
        "ef" * 32,
        status=grpc.StatusCode.FAILED_PRECONDITION,
        reason="LUCID_ERR_4601",
    )


async def test_a_payment_to_another_address_is_no_stake(
    kit: NodesKit, stores: Datastores, net: StakeNet
) -> None:
    keys = NodeKeys()
    other = str(PrivateKey.random().public_key.to_base58check_address())
    tx = net.pay(keys.tron, to=other)
    _, error = await refused_with(
        kit,
        stores,
        await kit.operator(),
        keys,
        tx,
        status=grpc.StatusCode.INVALID_ARGUMENT,
        reason="LUCID_ERR_4602",
    )
    assert STAKE_ADDRESS in (error.details() or "")


async def test_less_than_declared_is_no_stake(
    kit: NodesKit, stores: Datastores, net: StakeNet
) -> None:
    keys = NodeKeys()
    tx = net.pay(keys.tron, STAKE_MICROS)
    _, error = await refused_with(
        kit,
        stores,
        await kit.operator(),
        keys,
        tx,
        status=grpc.StatusCode.INVALID_ARGUMENT,
        reason="LUCID_ERR_4602",
        stake_micros=STAKE_MICROS + 1,
    )
    assert "less than the declared" in (error.details() or "")


async def test_a_trx_payment_is_not_a_usdt_stake(
    kit: NodesKit, stores: Datastores, net: StakeNet
) -> None:
    keys = NodeKeys()
    net.fund(keys.address)
    client = net.devnet.client()
    sent = (
        client.trx.transfer(keys.address, STAKE_ADDRESS, STAKE_MICROS)
        .build()
        .sign(keys.tron)
        .broadcast()
    )
    net.mine()
    _, error = await refused_with(
        kit,
        stores,
        await kit.operator(),
        keys,
        str(sent.txid),
        status=grpc.StatusCode.INVALID_ARGUMENT,
        reason="LUCID_ERR_4602",
    )
    assert "not a USDT-TRC20 transfer" in (error.details() or "")


async def test_a_failed_transfer_is_no_stake(
    kit: NodesKit, stores: Datastores, net: StakeNet
) -> None:
    keys = NodeKeys()
    net.fund(keys.address)  # TRX for the fee, no USDT: the transfer reverts
    tx = net.usdt_transfer(keys.tron, STAKE_ADDRESS, STAKE_MICROS)
    _, error = await refused_with(
        kit,
        stores,
        await kit.operator(),
        keys,
        tx,
        status=grpc.StatusCode.INVALID_ARGUMENT,
        reason="LUCID_ERR_4602",
    )
    assert "REVERT" in (error.details() or "")


async def test_a_stake_paid_by_another_address_is_not_the_nodes(
    kit: NodesKit, stores: Datastores, net: StakeNet
) -> None:
    tx = net.pay(PrivateKey.random())  # a real stake, of someone else
    await refused_with(
        kit,
        stores,
        await kit.operator(),
        NodeKeys(),
        tx,
        status=grpc.StatusCode.PERMISSION_DENIED,
        reason="LUCID_ERR_4603",
    )


async def test_a_stake_backs_one_node_only(
    kit: NodesKit, stores: Datastores, net: StakeNet
) -> None:
    op = await kit.operator()
    keys = NodeKeys()
    node, _ = await kit.register(op, keys=keys)
    registration = await stores.db[schema.REGISTRATIONS].find_one({"node_id": node.node_id})
    assert registration is not None
    used = registration["stake_tx_hash"]
    # the same key's address cannot register twice anyway; the stake is refused first
    _, error = await refused_with(
        kit,
        stores,
        op,
        keys,
        used,
        status=grpc.StatusCode.ALREADY_EXISTS,
        reason="LUCID_ERR_4002",
    )
    assert "already backs another node" in (error.details() or "")
    assert await stores.db[schema.STAKES].count_documents({"_id": used}) == 1


async def test_payments_unreachable_is_unavailable_and_stores_nothing(
    kit: NodesKit, stores: Datastores, net: StakeNet
) -> None:
    op = await kit.operator()
    keys = NodeKeys()
    tx = net.pay(keys.tron)
    async with payments_stopped(kit.mesh, net):
        challenge, error = await refused_with(
            kit,
            stores,
            op,
            keys,
            tx,
            status=grpc.StatusCode.UNAVAILABLE,
            reason="LUCID_ERR_5008",
        )
        assert details(error).retry_after_s
    reply = await kit.nodes.RegisterNode(  # back: the open challenge completes
        kit.register_request(challenge, keys, stake_tx=tx), metadata=op.md
    )
    assert reply.registration.stake_verified
