"""A system lockdown freezes payouts at the payments cluster (spec 06 §2: lockdown =
… + payouts frozen): while admin's mode says lockdown, CreatePayout and
CreatePayoutBatch are refused to everyone, the nodes service included, with a clear
error and nothing stored; once lifted, the same idempotency key makes its payout.
Payments asks the real admin cluster (GetSystemMode, cached 1 s); the mode is set in
admin's own state here, the emergency rpcs that set it are tested in
tests/test_admin_emergency.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from lucid.admin.store.state import NORMAL, ModeRecord, StateStore
from lucid.payments.v1 import payouts_pb2
from lucid.runtime.config import Settings
from tests.payments_support import USDT_UNIT, new_address, payments_bed
from tests.sessionkit import wait_serving
from tests.support import Mesh, details

S = payouts_pb2
GATE_TTL_S = 1.2


async def test_a_lockdown_freezes_payouts_until_lifted(
    settings: Settings, mesh: Mesh, tmp_path: Path
) -> None:
    async with payments_bed(settings, mesh, tmp_path) as bed:
        admin = await bed.mesh.start("admin")
        await wait_serving(admin)
        state = StateStore(admin.runtime.datastores.db)
        before = await bed.create()
        assert before.payout_id

        now = admin.runtime.clock.now()
        await state.set_mode(ModeRecord("lockdown", "drill", now, now + timedelta(hours=1), "test"))
        await asyncio.sleep(GATE_TTL_S)
        key = str(uuid.uuid4())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await bed.create(key)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert details(caught.value).reason == "LUCID_ERR_4003"
        assert "lockdown" in (caught.value.details() or "")
        batch = S.CreatePayoutBatchRequest(
            idempotency_key=str(uuid.uuid4()),
            items=[
                S.PayoutBatchItem(
                    idempotency_key=str(uuid.uuid4()),
                    recipient_address=new_address(),
                    amount_micros=USDT_UNIT,
                    reason="batch in lockdown",
                )
            ],
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await bed.stub().CreatePayoutBatch(batch)
        assert details(caught.value).reason == "LUCID_ERR_4003"
        listed = await bed.stub().ListPayouts(S.ListPayoutsRequest())
        assert listed.total_size == 1, "nothing stored during the lockdown"

        await state.set_mode(NORMAL)
        await asyncio.sleep(GATE_TTL_S)
        after = await bed.create(key)
        assert after.payout_id != before.payout_id
        listed = await bed.stub().ListPayouts(S.ListPayoutsRequest())
        assert listed.total_size == 2
