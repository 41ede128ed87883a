"""Spec 07 §7 over REST: the payout routes through the edge (HTTPS, JSON, bearer token)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lucid.common.v1 import access_pb2
from lucid.runtime.config import Settings
from tests.payments_support import USDT_UNIT, PaymentsBed, new_address, payments_bed
from tests.support import Mesh, https_client, serve_edge

S_BROADCAST = "PAYOUT_STATUS_BROADCAST"


@pytest.fixture
async def bed(settings: Settings, mesh: Mesh, tmp_path: Path) -> AsyncIterator[PaymentsBed]:
    async with payments_bed(settings, mesh, tmp_path) as bed:
        yield bed


async def test_payouts_over_rest(bed: PaymentsBed, mesh: Mesh) -> None:
    token = await mesh.token(role=access_pb2.ROLE_NODE_OPERATOR, kyc=access_pb2.KYC_STATUS_VERIFIED)
    headers = {"authorization": f"Bearer {token}"}
    recipient = new_address()
    body = {
        "idempotency_key": str(uuid.uuid4()),
        "recipient_address": recipient,
        "amount_micros": "5500000",
        "reason": "over REST",
    }
    async with serve_edge(bed.mesh.settings) as url, https_client(bed.mesh.settings) as http:
        async with http.post(f"{url}/api/v1/payments/payouts", json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            first = await r.json()
        async with http.post(f"{url}/api/v1/payments/payouts", json=body, headers=headers) as r:
            again = await r.json()
        assert again["replayed"] and again["payout"]["payout_id"] == first["payout"]["payout_id"]
        bad = {**body, "idempotency_key": str(uuid.uuid4()), "recipient_address": "T" + "1" * 34}
        async with http.post(f"{url}/api/v1/payments/payouts", json=bad, headers=headers) as r:
            assert r.status == 400
            assert "LUCID_ERR_1" in await r.text()
        cents = {**body, "idempotency_key": str(uuid.uuid4()), "amount_micros": "1234000"}
        async with http.post(f"{url}/api/v1/payments/payouts", json=cents, headers=headers) as r:
            assert r.status == 400
        payout_id = first["payout"]["payout_id"]
        await bed.until_status(payout_id, 3)
        await bed.mine()
        async with http.get(f"{url}/api/v1/payments/payouts/{payout_id}", headers=headers) as r:
            assert r.status == 200
            got = await r.json()
        assert got["payout"]["status"] == S_BROADCAST
        assert len(got["payout"]["transaction"]["tx_hash"]) == 64
        async with http.get(f"{url}/api/v1/payments/payouts/{payout_id}") as r:
            assert r.status == 401
    assert await bed.usdt_of(recipient) == 5_500_000 == 5.5 * USDT_UNIT
