"""Node stakes for tests: a ``lucid devnet tron`` process where node keys pay their
registration stake (a real USDT-TRC20 transfer signed with the node's TRON key), and the
real payments cluster on the mesh that verifies them for the nodes cluster.

Every test that registers a node goes through here (``NodesKit.register_request`` pays
a stake unless given one). The session's devnet is started on first use and mined by
hand: ``pay`` mines the 20 blocks that make the transfer solid.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tronpy.keys import PrivateKey

from lucid.nodeagent.agent import STAKE_MICROS
from lucid.payments import app as payments_app
from lucid.runtime.config import Settings
from lucid.runtime.server import ClusterApp, Runtime
from tests.devnet_support import USDT, Devnet
from tests.support import Mesh

STAKE_ADDRESS = Settings().tron_stake_address
FEE_LIMIT_SUN = 100_000_000
SOLID_BLOCKS = 20
"""Blocks mined after a transfer so that it is in a solid block (depth 19)."""


class StakeNet:
    """A devnet where stakes are paid."""

    def __init__(self, devnet: Devnet) -> None:
        self.devnet = devnet
        self._contract: Any = None

    @property
    def url(self) -> str:
        return self.devnet.url

    def fund(self, address: str, *, trx_sun: int = 500_000_000, usdt_micros: int = 0) -> None:
        """Gives an address TRX (for the fee) and USDT, as the devnet's test control does."""
        self.devnet.admin("fund", address=address, trx_sun=trx_sun, usdt_micros=usdt_micros)

    def mine(self, n: int = SOLID_BLOCKS) -> int:
        return self.devnet.mine(n)

    def usdt_transfer(
        self, key: PrivateKey, to: str, amount_micros: int, *, solid: bool = True
    ) -> str:
        """Signs and broadcasts a USDT transfer from ``key``'s address; its txid (mined
        into a solid block unless ``solid`` is false: then it is not mined at all)."""
        if self._contract is None:
            self._contract = self.devnet.client().get_contract(USDT)
        owner = key.public_key.to_base58check_address()
        sent = (
            self._contract.functions.transfer(to, amount_micros)
            .with_owner(owner)
            .fee_limit(FEE_LIMIT_SUN)
            .build()
            .sign(key)
            .broadcast()
        )
        if solid:
            self.mine()
        return str(sent.txid)

    def pay(
        self,
        key: PrivateKey,
        amount_micros: int = STAKE_MICROS,
        *,
        to: str = STAKE_ADDRESS,
        solid: bool = True,
    ) -> str:
        """Funds ``key``'s address and pays a stake from it; the stake's txid."""
        self.fund(key.public_key.to_base58check_address(), usdt_micros=amount_micros)
        return self.usdt_transfer(key, to, amount_micros, solid=solid)


_SESSION: list[tuple[StakeNet, Path]] = []


def session_net() -> StakeNet:
    """The test session's stake devnet, started on first use."""
    if not _SESSION:
        root = Path(tempfile.mkdtemp(prefix="lucid-stakes-"))
        devnet = Devnet(root / "devnet")
        devnet.start()
        _SESSION.append((StakeNet(devnet), root))
    return _SESSION[0][0]


def stop_session_net() -> None:
    """Stops the session's stake devnet (if it was started)."""
    while _SESSION:
        net, root = _SESSION.pop()
        net.devnet.stop()
        shutil.rmtree(root, ignore_errors=True)


async def serve_payments(mesh: Mesh, net: StakeNet) -> None:
    """The payments cluster on ``mesh``, reading TRON from ``net`` (restarted if it runs
    against another network)."""
    running = mesh.servers.get("payments")
    if running is not None:
        if running.runtime.settings.tron_endpoint == net.url:
            return
        await mesh.stop("payments")

    async def build(runtime: Runtime) -> ClusterApp:
        runtime.settings = runtime.settings.replace(tron_endpoint=net.url)
        return await payments_app.build(runtime)

    await mesh.start("payments", build)


@contextlib.asynccontextmanager
async def payments_stopped(mesh: Mesh, net: StakeNet) -> Any:
    """The payments cluster down for the block, then back."""
    await mesh.stop("payments")
    try:
        yield
    finally:
        await serve_payments(mesh, net)


@contextlib.asynccontextmanager
async def payments_up(mesh: Mesh, net: StakeNet) -> Any:
    """The payments cluster up for the block only."""
    await serve_payments(mesh, net)
    try:
        yield
    finally:
        await mesh.stop("payments")


@contextlib.asynccontextmanager
async def mining(net: StakeNet, interval_s: float) -> AsyncIterator[None]:
    """A block every ``interval_s`` while the block runs, as a running TRON network makes
    them (for what waits for solid blocks on its own, such as an agent paying its stake)."""

    async def mine() -> None:
        while True:
            await asyncio.to_thread(net.mine, 1)
            await asyncio.sleep(interval_s)

    miner = asyncio.create_task(mine())
    try:
        yield
    finally:
        miner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await miner
