"""Spec 07 §7 over REST: payouts, wallet transactions and payments through the edge
(HTTPS, JSON, bearer token)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lucid.common.v1 import access_pb2
from lucid.runtime.config import Settings
from tests.payments_support import TRX, USDT_UNIT, PaymentsBed, new_address, payments_bed
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


async def test_a_wallet_transaction_and_a_payment_over_rest(bed: PaymentsBed, mesh: Mesh) -> None:
    token = await mesh.token(role=access_pb2.ROLE_USER)
    headers = {"authorization": f"Bearer {token}"}
    recipient = new_address()
    async with serve_edge(bed.mesh.settings) as url, https_client(bed.mesh.settings) as http:
        wallet_body = {"name": "rest wallet", "currency": "CURRENCY_USDT"}
        async with http.post(f"{url}/api/v1/wallets", json=wallet_body, headers=headers) as r:
            assert r.status == 200, await r.text()
            wallet = (await r.json())["wallet"]
        await asyncio.to_thread(
            bed.devnet.admin,
            "fund",
            address=wallet["address"],
            trx_sun=100 * TRX,
            usdt_micros=20 * USDT_UNIT,
        )
        path = f"{url}/api/v1/wallets/{wallet['wallet_id']}/transactions"
        body = {
            "type": "WALLET_TRANSACTION_TYPE_TRANSFER",
            "amount_micros": "2500000",
            "recipient_address": recipient,
            "currency": "CURRENCY_USDT",
            "idempotency_key": "rest-1",
        }
        async with http.post(path, json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            sent = (await r.json())["transaction"]
        assert sent["status"] == "TRANSFER_STATUS_BROADCAST"
        async with http.post(path, json=body, headers=headers) as r:
            assert (await r.json())["transaction"]["transaction_id"] == sent["transaction_id"]
        too_much = {**body, "idempotency_key": "rest-2", "amount_micros": "99000000"}
        async with http.post(path, json=too_much, headers=headers) as r:
            assert r.status == 400, await r.text()
            assert "LUCID_ERR_4004" in await r.text()
        await bed.mine(20)
        async with http.get(f"{path}/{sent['transaction_id']}", headers=headers) as r:
            assert r.status == 200
            got = (await r.json())["transaction"]
        assert len(got["transaction"]["tx_hash"]) == 64
        payment = {
            "wallet_id": wallet["wallet_id"],
            "recipient_address": recipient,
            "currency": "CURRENCY_USDT",
            "amount_micros": "1000000",
            "reference": "rest-order",
            "idempotency_key": "rest-pay",
        }
        async with http.post(f"{url}/api/v1/payments/payments", json=payment, headers=headers) as r:
            assert r.status == 200, await r.text()
            paid = (await r.json())["payment"]
        async with http.get(
            f"{url}/api/v1/payments/payments/{paid['payment_id']}", headers=headers
        ) as r:
            assert r.status == 200
            assert (await r.json())["payment"]["reference"] == "rest-order"
        async with http.get(f"{path}/{sent['transaction_id']}") as r:
            assert r.status == 401
    await bed.mine()
    assert await bed.usdt_of(recipient) == 3_500_000
