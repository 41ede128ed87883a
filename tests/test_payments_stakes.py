"""``UsdtService.VerifyStake`` (a node's registration stake, spec 05 §4) on the payments
cluster itself, over gRPC and mTLS against a devnet process: the verified transfer's
facts, who may call it (the nodes cluster's identity only), its field rules, and TRON
being unreachable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from tronpy.keys import PrivateKey

from lucid.common.v1 import access_pb2
from lucid.payments.v1 import tron_pb2, tron_pb2_grpc
from lucid.runtime.config import Settings
from tests.payments_support import PaymentsBed, payments_bed
from tests.stake_support import STAKE_ADDRESS, STAKE_MICROS, StakeNet
from tests.support import Mesh, bearer, details


@pytest.fixture
async def bed(settings: Settings, mesh: Mesh, tmp_path: Path) -> AsyncIterator[PaymentsBed]:
    async with payments_bed(settings, mesh, tmp_path, usdt_micros=0, trx_sun=0) as bed:
        yield bed


def usdt(bed: PaymentsBed, identity: str = "nodes") -> tron_pb2_grpc.UsdtServiceStub:
    return tron_pb2_grpc.UsdtServiceStub(bed.mesh.channel("payments", identity))


def address(key: PrivateKey) -> str:
    return str(key.public_key.to_base58check_address())


async def test_a_stake_is_verified_with_its_facts(bed: PaymentsBed) -> None:
    net = StakeNet(bed.devnet)
    key = PrivateKey.random()
    tx = net.pay(key, 2 * STAKE_MICROS)
    reply = await usdt(bed).VerifyStake(
        tron_pb2.VerifyStakeRequest(
            tx_id=tx, node_address=address(key), min_amount_micros=STAKE_MICROS
        )
    )
    assert reply.tx_id == tx
    assert reply.from_address == address(key)
    assert reply.stake_address == STAKE_ADDRESS
    assert reply.amount_micros == 2 * STAKE_MICROS
    assert reply.block_number > 0
    assert reply.block_time.seconds > 0


async def test_only_the_nodes_cluster_may_verify_stakes(bed: PaymentsBed, mesh: Mesh) -> None:
    key = PrivateKey.random()
    request = tron_pb2.VerifyStakeRequest(
        tx_id="ab" * 32, node_address=address(key), min_amount_micros=STAKE_MICROS
    )
    for identity in ("admin", "sessions"):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await usdt(bed, identity).VerifyStake(request)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED, identity
    token = await mesh.token(role=access_pb2.ROLE_SUPER_ADMIN)
    with pytest.raises(grpc.aio.AioRpcError) as user:  # service-only: no user may call it
        await usdt(bed, "operator").VerifyStake(request, metadata=bearer(token))
    assert user.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tx_id", "AB" * 32),
        ("tx_id", "ab" * 31),
        ("node_address", "T" + "1" * 33),  # base58 shape, bad checksum
        ("node_address", "0x" + "ab" * 20),
        ("min_amount_micros", 0),
    ],
)
async def test_malformed_requests_are_invalid(bed: PaymentsBed, field: str, value: object) -> None:
    fields: dict[str, object] = {
        "tx_id": "ab" * 32,
        "node_address": address(PrivateKey.random()),
        "min_amount_micros": STAKE_MICROS,
        field: value,
    }
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await usdt(bed).VerifyStake(tron_pb2.VerifyStakeRequest(**fields))  # type: ignore[arg-type]
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(bad.value).reason == "LUCID_ERR_1001"


async def test_tron_unreachable_is_unavailable(bed: PaymentsBed) -> None:
    key = PrivateKey.random()
    tx = StakeNet(bed.devnet).pay(key)
    bed.devnet.stop()
    with pytest.raises(grpc.aio.AioRpcError) as down:
        await usdt(bed).VerifyStake(
            tron_pb2.VerifyStakeRequest(
                tx_id=tx, node_address=address(key), min_amount_micros=STAKE_MICROS
            )
        )
    assert down.value.code() == grpc.StatusCode.UNAVAILABLE
    assert details(down.value).reason == "LUCID_ERR_4010"
