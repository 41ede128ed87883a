"""AdminPayoutService over gRPC against the real payments cluster and a TRON devnet: a
super admin triggers payouts to users (paid at their TRON address, idempotent per
request), follows them to confirmation and lists them; a bad amount or an unknown user
gets a clear error and pays nothing; users, node operators and admins are refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from tronpy.keys import PrivateKey

from lucid.admin.v1 import audit_pb2, audit_pb2_grpc, operations_pb2
from lucid.admin.v1 import operations_pb2_grpc as ops_grpc
from lucid.common.v1 import access_pb2
from lucid.payments.v1 import payouts_pb2
from lucid.runtime.config import Settings
from tests.admin_support import refused
from tests.auth_support import auth_client
from tests.payments_support import PaymentsBed, payments_bed, until
from tests.support import Mesh, bearer, details

OP = operations_pb2


@pytest.fixture(scope="module")
async def bed(
    settings: Settings, mesh: Mesh, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PaymentsBed]:
    async with payments_bed(settings, mesh, tmp_path_factory.mktemp("admin-pay")) as bed:
        await bed.mesh.start("admin")
        yield bed


async def user(mesh: Mesh) -> tuple[str, str]:
    """A signed-in user of auth: id and TRON address."""
    client = auth_client(mesh.settings)
    try:
        key = PrivateKey.random()
        login = await client.login(key)
    finally:
        await client.channel.close()
    return login.user.user_id, key.public_key.to_base58check_address()


async def md(mesh: Mesh, role: int = access_pb2.ROLE_SUPER_ADMIN) -> tuple[tuple[str, str]]:
    return bearer(await mesh.token(role=role, user_id=str(uuid.uuid4())))


def stub(bed: PaymentsBed) -> ops_grpc.AdminPayoutServiceStub:
    return ops_grpc.AdminPayoutServiceStub(bed.mesh.channel("admin"))


async def test_trigger_pays_each_user_once_and_follows_to_confirmation(
    bed: PaymentsBed, mesh: Mesh
) -> None:
    (first, first_address), (second, second_address) = await user(mesh), await user(mesh)
    admin = await md(mesh)
    request = OP.TriggerPayoutRequest(
        request_id=str(uuid.uuid4()),
        user_ids=[first, second],
        amount_micros=2_000_000,
        currency=OP.PAYOUT_CURRENCY_USDT,
        reason="bonus",
    )
    made = (await stub(bed).TriggerPayout(request, metadata=admin)).payouts
    assert [(p.user_id, p.recipient_address) for p in made] == [
        (first, first_address),
        (second, second_address),
    ]
    assert all(p.amount_micros == 2_000_000 and p.reason == "bonus" for p in made)
    again = (await stub(bed).TriggerPayout(request, metadata=admin)).payouts
    assert [p.payout_id for p in again] == [p.payout_id for p in made], "never pays twice"

    payout_id = made[0].payout_id
    await bed.until_status(payout_id, payouts_pb2.PAYOUT_STATUS_BROADCAST)
    await bed.mine(20)

    async def status() -> OP.AdminPayout:
        reply = await stub(bed).GetPayoutStatus(
            OP.GetPayoutStatusRequest(payout_id=payout_id), metadata=admin
        )
        return reply.payout

    done = await until(status, lambda p: p.state == OP.PAYOUT_STATE_COMPLETED)
    assert len(done.tx_hash) == 64
    assert done.confirmations >= 19
    assert await bed.usdt_of(first_address) == 2_000_000

    listed = await stub(bed).ListPayouts(
        OP.ListPayoutsRequest(user_id=first, page_size=50), metadata=admin
    )
    assert [p.payout_id for p in listed.payouts] == [payout_id]
    completed = await stub(bed).ListPayouts(
        OP.ListPayoutsRequest(state=OP.PAYOUT_STATE_COMPLETED, page_size=50), metadata=admin
    )
    assert payout_id in {p.payout_id for p in completed.payouts}


async def test_bad_requests_pay_nothing_and_are_audited(bed: PaymentsBed, mesh: Mesh) -> None:
    known, address = await user(mesh)
    admin = await md(mesh)
    unknown = OP.TriggerPayoutRequest(
        request_id=str(uuid.uuid4()),
        user_ids=[known, str(uuid.uuid4())],
        amount_micros=1_000_000,
        currency=OP.PAYOUT_CURRENCY_USDT,
        reason="x",
    )
    error = await refused(stub(bed).TriggerPayout(unknown, metadata=admin))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    odd = OP.TriggerPayoutRequest(
        request_id=str(uuid.uuid4()),
        user_ids=[known],
        amount_micros=1_000_001,
        currency=OP.PAYOUT_CURRENCY_USDT,
        reason="x",
    )
    error = await refused(stub(bed).TriggerPayout(odd, metadata=admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error).reason.startswith("LUCID_ERR_1")
    listed = await stub(bed).ListPayouts(OP.ListPayoutsRequest(user_id=known), metadata=admin)
    assert not listed.payouts
    assert await bed.usdt_of(address) == 0

    async with bed.mesh.channel("admin") as channel:
        entries = await audit_pb2_grpc.AuditServiceStub(channel).QueryAuditLogs(
            audit_pb2.QueryAuditLogsRequest(resource=audit_pb2.AUDIT_RESOURCE_PAYOUT),
            metadata=admin,
        )
    ids = {e.resource_id: e.result for e in entries.entries}
    assert ids[unknown.request_id] == audit_pb2.AUDIT_RESULT_FAILURE
    assert ids[odd.request_id] == audit_pb2.AUDIT_RESULT_FAILURE


async def test_only_super_admins_see_or_trigger_payouts(bed: PaymentsBed, mesh: Mesh) -> None:
    someone, _ = await user(mesh)
    trigger = OP.TriggerPayoutRequest(
        request_id=str(uuid.uuid4()),
        user_ids=[someone],
        amount_micros=1_000_000,
        currency=OP.PAYOUT_CURRENCY_USDT,
        reason="x",
    )
    for role in (access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR, access_pb2.ROLE_ADMIN):
        caller = await md(mesh, role)
        for call in (
            stub(bed).ListPayouts(OP.ListPayoutsRequest(), metadata=caller),
            stub(bed).TriggerPayout(trigger, metadata=caller),
            stub(bed).GetPayoutStatus(
                OP.GetPayoutStatusRequest(payout_id=str(uuid.uuid4())), metadata=caller
            ),
        ):
            error = await refused(call)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = await stub(bed).ListPayouts(
        OP.ListPayoutsRequest(user_id=someone), metadata=await md(mesh)
    )
    assert not listed.payouts
