"""The node agent's stake payment (``lucid.nodeagent.stake``) against a devnet process:
paid once and followed until solid, not paid again by a restarted agent, and a transfer
the node cannot afford is an error rather than a registration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lucid.lib.sealing import Sealer
from lucid.nodeagent import keys as keyfiles
from lucid.nodeagent.stake import STAKE_FILE, StakeError, StakePayer
from lucid.runtime.config import Settings
from tests.devnet_support import USDT
from tests.stake_support import STAKE_ADDRESS, STAKE_MICROS, StakeNet, mining, session_net


@pytest.fixture
async def net() -> AsyncIterator[StakeNet]:
    """The session's stake devnet, making a block every 0.05 s meanwhile."""
    found = session_net()
    async with mining(found, 0.05):
        yield found


def usdt_of(net: StakeNet, address: str) -> int:
    return int(net.devnet.client().get_contract(USDT).functions.balanceOf(address))


async def test_a_stake_is_paid_once_and_followed_until_solid(
    net: StakeNet, settings: Settings, tmp_path: Path
) -> None:
    keys = keyfiles.load_or_create(tmp_path, Sealer("stake-test"))
    net.fund(keys.address, usdt_micros=STAKE_MICROS)
    local = settings.replace(tron_endpoint=net.url)
    before = usdt_of(net, STAKE_ADDRESS)
    payer = StakePayer(local, keys, tmp_path)
    try:
        tx = await payer.pay(STAKE_MICROS, timeout_s=60)
    finally:
        await payer.close()
    assert (tmp_path / STAKE_FILE).exists()
    assert net.devnet.post("walletsolidity/gettransactioninfobyid", value=tx)["receipt"]
    assert usdt_of(net, keys.address) == 0
    assert usdt_of(net, STAKE_ADDRESS) == before + STAKE_MICROS

    again = StakePayer(local, keys, tmp_path)  # a restarted agent
    try:
        assert await again.pay(STAKE_MICROS, timeout_s=60) == tx
    finally:
        await again.close()
    assert usdt_of(net, STAKE_ADDRESS) == before + STAKE_MICROS  # paid once


async def test_a_stake_the_node_cannot_afford_is_an_error(
    net: StakeNet, settings: Settings, tmp_path: Path
) -> None:
    keys = keyfiles.load_or_create(tmp_path, Sealer("stake-test"))
    net.fund(keys.address)  # TRX for the fee, no USDT: the transfer reverts
    payer = StakePayer(settings.replace(tron_endpoint=net.url), keys, tmp_path)
    try:
        with pytest.raises(StakeError, match="failed"):
            await payer.pay(STAKE_MICROS, timeout_s=60)
    finally:
        await payer.close()
    assert not (tmp_path / STAKE_FILE).exists()  # the next start pays anew
