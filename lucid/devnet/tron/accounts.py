"""Accounts of the devnet: TRX balance, Stake 2.0 state and resource usage.

Resource usage recovers linearly over 24 hours, as on TRON. Times are the
devnet's resource clock in milliseconds (it can be advanced for the 14-day
unfreeze delay).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lucid.devnet.tron.config import DAY_MS, SUN, DevnetConfig

RESOURCE_NAMES = ("BANDWIDTH", "ENERGY")


@dataclass
class Usage:
    """Used units of a resource at a time; recovers linearly over a day."""

    used: int = 0
    at_ms: int = 0

    def current(self, now_ms: int) -> int:
        elapsed = max(0, now_ms - self.at_ms)
        if elapsed >= DAY_MS:
            return 0
        return self.used * (DAY_MS - elapsed) // DAY_MS

    def add(self, units: int, now_ms: int) -> None:
        self.used = self.current(now_ms) + units
        self.at_ms = now_ms


@dataclass
class Unfreezing:
    """Stake being released: withdrawable after ``expire_ms``."""

    resource: str
    amount: int
    expire_ms: int


@dataclass
class Account:
    """One TRON account."""

    address: str
    balance: int = 0
    create_ms: int = 0
    frozen: dict[str, int] = field(default_factory=dict)
    """Own stake per resource, in sun (what is delegated out included)."""
    delegated_out: dict[str, int] = field(default_factory=dict)
    """``resource:receiver`` → sun delegated."""
    delegation_locks: dict[str, int] = field(default_factory=dict)
    """``resource:receiver`` → lock expiry (ms)."""
    acquired: dict[str, int] = field(default_factory=dict)
    """Stake delegated to this account per resource, in sun."""
    unfreezing: list[Unfreezing] = field(default_factory=list)
    energy: Usage = field(default_factory=Usage)
    net: Usage = field(default_factory=Usage)
    free_net: Usage = field(default_factory=Usage)
    reward: int = 0
    """Voting reward claimable, in sun (``wallet/getReward``); the devnet has no witness
    elections, so only the ``/admin/reward`` test control credits it."""

    def delegated_total(self, resource: str) -> int:
        return sum(v for k, v in self.delegated_out.items() if k.startswith(resource + ":"))

    def available_stake(self, resource: str) -> int:
        """Own stake not delegated out (what can be unfrozen or delegated)."""
        return self.frozen.get(resource, 0) - self.delegated_total(resource)

    def effective_stake(self, resource: str) -> int:
        return self.available_stake(resource) + self.acquired.get(resource, 0)

    def energy_limit(self, config: DevnetConfig) -> int:
        return self.effective_stake("ENERGY") // SUN * config.energy_per_staked_trx

    def net_limit(self, config: DevnetConfig) -> int:
        return self.effective_stake("BANDWIDTH") // SUN * config.net_per_staked_trx

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        account = cls(**{k: v for k, v in data.items() if k not in _NESTED})
        account.unfreezing = [Unfreezing(**u) for u in data.get("unfreezing", [])]
        account.energy = Usage(**data.get("energy", {}))
        account.net = Usage(**data.get("net", {}))
        account.free_net = Usage(**data.get("free_net", {}))
        return account

    def view(self, address: str, now_ms: int) -> dict[str, Any]:
        """The ``wallet/getaccount`` answer."""
        out: dict[str, Any] = {"address": address, "create_time": self.create_ms}
        if self.balance:
            out["balance"] = self.balance
        out["frozenV2"] = [
            {**({"type": r} if r != "BANDWIDTH" else {}), **({"amount": a} if a else {})}
            for r in (*RESOURCE_NAMES, "TRON_POWER")
            for a in [self.available_stake(r) if r in RESOURCE_NAMES else 0]
        ]
        if self.unfreezing:
            out["unfrozenV2"] = [
                {
                    **({"type": u.resource} if u.resource != "BANDWIDTH" else {}),
                    "unfreeze_amount": u.amount,
                    "unfreeze_expire_time": u.expire_ms,
                }
                for u in self.unfreezing
            ]
        resource: dict[str, Any] = {}
        if self.delegated_total("ENERGY"):
            resource["delegated_frozenV2_balance_for_energy"] = self.delegated_total("ENERGY")
        if self.acquired.get("ENERGY"):
            resource["acquired_delegated_frozenV2_balance_for_energy"] = self.acquired["ENERGY"]
        if self.energy.current(now_ms):
            resource["energy_usage"] = self.energy.current(now_ms)
            resource["latest_consume_time_for_energy"] = self.energy.at_ms
        if resource:
            out["account_resource"] = resource
        if self.delegated_total("BANDWIDTH"):
            out["delegated_frozenV2_balance_for_bandwidth"] = self.delegated_total("BANDWIDTH")
        if self.acquired.get("BANDWIDTH"):
            out["acquired_delegated_frozenV2_balance_for_bandwidth"] = self.acquired["BANDWIDTH"]
        if self.net.current(now_ms):
            out["net_usage"] = self.net.current(now_ms)
        if self.free_net.current(now_ms):
            out["free_net_usage"] = self.free_net.current(now_ms)
        return out


_NESTED = {"unfreezing", "energy", "net", "free_net"}
