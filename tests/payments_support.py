"""The payments cluster against a real devnet process, for tests.

``PaymentsBed`` runs a ``lucid devnet tron`` process, the payments server on its
own free port and database (so limits and payouts of one module never meet
another's), and funds its payout hot wallet on the devnet.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from tronpy.keys import PrivateKey

from lucid.lib.clock import Clock
from lucid.payments import app as payments_app
from lucid.payments.servicers.wallets import WalletServiceServicer
from lucid.payments.v1 import payouts_pb2, payouts_pb2_grpc, wallets_pb2_grpc
from lucid.runtime.config import Settings
from lucid.runtime.server import ClusterServer
from lucid.supervisor.localservers import free_port
from tests.devnet_support import USDT, Devnet
from tests.support import Mesh
from tests.waiting import eventually

T = TypeVar("T")
USDT_UNIT = 1_000_000
TRX = 1_000_000


async def until(
    check: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float = 30.0
) -> T:
    """``check()`` once ``done`` holds for its value (``tests.waiting.eventually``)."""
    latest: list[T] = []

    async def condition() -> bool:
        latest[:] = [await check()]
        return done(latest[0])

    await eventually(condition, timeout_s=timeout_s, what=f"{check!r} meeting {done!r}")
    return latest[0]


def new_address() -> str:
    return str(PrivateKey.random().public_key.to_base58check_address())


@dataclass
class PaymentsBed:
    """A devnet, a payments server and stubs."""

    devnet: Devnet
    mesh: Mesh
    server: ClusterServer
    hot_address: str

    def stub(self, identity: str = "nodes") -> payouts_pb2_grpc.PayoutServiceStub:
        return payouts_pb2_grpc.PayoutServiceStub(self.mesh.channel("payments", identity))

    def wallet_stub(self, identity: str = "admin") -> wallets_pb2_grpc.WalletServiceStub:
        return wallets_pb2_grpc.WalletServiceStub(self.mesh.channel("payments", identity))

    async def usdt_of(self, address: str) -> int:
        def read() -> int:
            contract = self.devnet.client().get_contract(USDT)
            return int(contract.functions.balanceOf(address))

        return await asyncio.to_thread(read)

    async def mine(self, n: int = 1) -> int:
        return await asyncio.to_thread(self.devnet.mine, n)

    async def payout(self, payout_id: str) -> payouts_pb2.Payout:
        response = await self.stub().GetPayout(payouts_pb2.GetPayoutRequest(payout_id=payout_id))
        return response.payout

    async def until_status(
        self, payout_id: str, status: int, timeout_s: float = 30.0
    ) -> payouts_pb2.Payout:
        return await until(lambda: self.payout(payout_id), lambda p: p.status == status, timeout_s)

    async def create(self, key: str | None = None, **fields: Any) -> payouts_pb2.Payout:
        request = payouts_pb2.CreatePayoutRequest(
            idempotency_key=key or str(uuid.uuid4()),
            recipient_address=fields.pop("recipient_address", None) or new_address(),
            amount_micros=fields.pop("amount_micros", USDT_UNIT),
            reason=fields.pop("reason", "test payout"),
            **fields,
        )
        return (await self.stub().CreatePayout(request)).payout


@contextlib.asynccontextmanager
async def payments_bed(
    settings: Settings,
    mesh: Mesh,
    tmp_path: Path,
    *,
    usdt_micros: int = 100_000 * USDT_UNIT,
    trx_sun: int = 100_000 * TRX,
    options: payments_app.PaymentsOptions | None = None,
    block_interval_s: float = 3600.0,
    clock: Clock | None = None,
    **changes: Any,
) -> AsyncIterator[PaymentsBed]:
    """A devnet (blocks mined by hand unless ``block_interval_s`` is short) and a payments
    server with a funded hot wallet (on ``clock`` when given)."""
    devnet = Devnet(tmp_path / "devnet", block_interval_s=block_interval_s)
    devnet.start()
    ports = {**settings.ports, "payments": free_port()}
    own = settings.replace(
        ports=ports,
        mongodb_db=f"lucid_pay_{uuid.uuid4().hex[:10]}",
        tron_endpoint=devnet.url,
        payout_poll_interval_s=0.05,
        **changes,
    )
    private = Mesh(own)
    private.servers["auth"] = mesh.servers["auth"]

    async def build(runtime: Any) -> Any:
        if clock is not None:
            runtime.clock = clock
        return await payments_app.build(runtime, options)

    try:
        server = await private.start("payments", build)
        wallets = next(
            s for _, s in server.app.servicers if isinstance(s, WalletServiceServicer)
        ).wallets
        hot = await wallets.payout_wallet()
        if usdt_micros or trx_sun:
            await asyncio.to_thread(
                devnet.admin, "fund", address=hot.address, trx_sun=trx_sun, usdt_micros=usdt_micros
            )
        yield PaymentsBed(devnet, private, server, hot.address)
    finally:
        private.servers.pop("auth", None)
        await private.stop_all()
        await asyncio.to_thread(devnet.stop)


def code_of(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    return error.code()
