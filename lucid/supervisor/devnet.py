"""The local TRON network under ``lucid up``: its process and the payout key it funds.

On one machine the payments cluster pays on ``lucid devnet tron``. The payout hot
wallet's key is made here (OS CSPRNG, sealed in ``var/secrets``) before anything
starts, so the devnet's genesis can fund its address with TRX and USDT; the
payments cluster builds its hot wallet from the same sealed file on first start.
The three dev agents' keys are made here too, so the genesis also funds their
addresses: each agent pays its 100 USDT registration stake to the stake address
(``tron_stake_address``) before it registers.
"""

from __future__ import annotations

import os
import sys

from tronpy.keys import PrivateKey

from lucid.lib.sealing import Sealer
from lucid.nodeagent import keys as keyfiles
from lucid.payments.app import PAYOUT_KEY_FILE
from lucid.runtime.config import Settings
from lucid.supervisor.devnodes import AGENTS, agents_dir

GENESIS_TRX_SUN = 1_000_000 * 1_000_000
GENESIS_USDT_MICROS = 1_000_000 * 1_000_000
DEV_NODE_TRX_SUN = 1_000 * 1_000_000
"""Each dev agent's TRX: the fee of its stake transfer (about 55 TRX burnt without energy)."""
DEV_NODE_USDT_MICROS = 1_000 * 1_000_000
"""Each dev agent's USDT: its 100 USDT stake, and some."""


def ensure_payout_key(settings: Settings) -> str:
    """The payout hot wallet's address; its sealed key is written on first use."""
    sealer = Sealer(settings.sealing_passphrase())
    path = settings.secrets_dir / PAYOUT_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(sealer.seal(PrivateKey.random().to_bytes()))
    key = PrivateKey(sealer.unseal(path.read_bytes()))
    return str(key.public_key.to_base58check_address())


def dev_node_addresses(settings: Settings) -> list[str]:
    """The TRON addresses of ``lucid up``'s dev agents; their sealed keys are made here on
    first use, where each agent then finds them (``var/node-agents/<name>``)."""
    sealer = Sealer(settings.sealing_passphrase())
    return [keyfiles.load_or_create(agents_dir(settings) / name, sealer).address for name in AGENTS]


def devnet_argv(settings: Settings) -> list[str]:
    """``lucid devnet tron`` with the payout wallet and the dev agents (their stakes and
    fees) funded at genesis (first start only)."""
    fund = f"{ensure_payout_key(settings)}:{GENESIS_TRX_SUN}:{GENESIS_USDT_MICROS}"
    argv = [sys.executable, "-m", "lucid", "devnet", "tron"]
    argv += ["--port", str(settings.devnet_tron_port)]
    argv += ["--data-dir", str(settings.var_dir / "devnet" / "tron"), "--fund", fund]
    for address in dev_node_addresses(settings):
        argv += ["--fund", f"{address}:{DEV_NODE_TRX_SUN}:{DEV_NODE_USDT_MICROS}"]
    argv += ["--usdt-contract", settings.tron_usdt_contract]
    argv += ["--block-interval", str(settings.devnet_tron_block_interval_s)]
    return argv
