"""The devnet's knobs: block time, costs and prices, and the genesis allocation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lucid.lib import tron

SUN = 1_000_000
"""Sun per TRX."""
DAY_MS = 86_400_000


@dataclass(frozen=True)
class GenesisAccount:
    """An account funded in the first block."""

    address: str
    """Base58Check address."""
    trx_sun: int = 0
    usdt_micros: int = 0


def parse_fund(text: str) -> GenesisAccount:
    """``ADDRESS:TRX_SUN:USDT_MICROS`` (the ``--fund`` option)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError("--fund takes ADDRESS:TRX_SUN:USDT_MICROS")
    tron.decode_address(parts[0])
    return GenesisAccount(parts[0], int(parts[1]), int(parts[2]))


@dataclass(frozen=True)
class DevnetConfig:
    """How the local network behaves (defaults follow mainnet where it matters)."""

    data_dir: Path = Path("var/devnet/tron")
    """Where the chain is kept (``chain.sqlite3``)."""
    host: str = "127.0.0.1"
    port: int = 8090
    block_interval_s: float = 3.0
    """One block per interval (tests use 0.05 to 0.2 s)."""
    solid_depth: int = 19
    """A block is solid once this many blocks follow it."""
    genesis: tuple[GenesisAccount, ...] = ()
    usdt_contract: str = tron.encode_address(b"\x41" + tron.keccak256(b"lucid devnet usdt")[-20:])
    """The USDT contract's address (configurable as Nile's and Shasta's differ)."""
    energy_fee_sun: int = 420
    bandwidth_fee_sun: int = 1000
    free_net_limit: int = 600
    create_account_fee_sun: int = 1_000_000
    """Burnt when a TRX transfer creates the recipient's account."""
    usdt_transfer_energy: int = 65_000
    usdt_transfer_energy_new_holder: int = 130_000
    """A transfer to an address holding no USDT costs about twice as much."""
    usdt_approve_energy: int = 45_000
    usdt_revert_energy: int = 15_000
    """Energy consumed up to a revert (insufficient balance or allowance)."""
    energy_per_staked_trx: int = 10
    """EnergyLimit per TRX staked for ENERGY (mainnet's ratio drifts; fixed here)."""
    net_per_staked_trx: int = 1
    unfreeze_delay_days: int = 14
    max_tx_age_ms: int = DAY_MS
    """Expiration may be at most this far ahead of now."""
    minimum_stake_sun: int = SUN
    extra_params: dict[str, int] = field(default_factory=dict)
