"""Settings of one chain validator, derived from the shared settings.

A validator is ``lucid serve blockchain --validator N``: validator 0 listens on the
blockchain port of the port map, validator N ≥ 1 on ``extra_validator_port + N - 1``.
Its peers are the other validators of ``settings.validators`` (the static peer
list); its collections are prefixed ``chain_v<N>_`` so that every validator keeps
its own replica of the chain in the one database. Keys live under
``<var>/chain/validators/``: each validator's private key sealed at rest, and its
public key, which is how the validators of one machine learn each other's keys (in
production the operator distributes the public keys with the peer list).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lucid.runtime.config import Settings

NETWORK_NAME = "lucid_blocks"
CONSENSUS_ALGORITHM = "PoOT"
MAX_BLOCK_TRANSACTIONS = 1000
MAX_BLOCK_BYTES = 1024 * 1024
MAX_TRANSACTION_BYTES = 1024 * 1024
TIME_TOLERANCE_S = 30.0
"""How far in the future a block or transaction time may lie (clock skew)."""


def validator_id(index: int) -> str:
    """The id of validator ``index``: ``validator-<index>``."""
    return f"validator-{index}"


@dataclass(frozen=True)
class Peer:
    """Another validator of the static peer list."""

    index: int
    validator_id: str
    host: str
    port: int

    @property
    def target(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ChainConfig:
    """What one validator process needs to know."""

    index: int
    validators: int
    host: str
    ports: tuple[int, ...]
    keys_dir: Path
    block_interval_s: float = 10.0
    leader_timeout_s: float = 5.0
    anchoring_timeout_s: float = 60.0
    """How long an anchoring may wait for a final block before it expires (spec 02 §4)."""
    anchoring_batch_size: int = 10
    """ANCHORING_BATCH_SIZE of spec 02 (reported; blocks take every pending anchor)."""
    sync_interval_s: float = 1.0
    """How often the validator asks its peers for final blocks it lacks."""
    beacon_interval_s: float = 120.0
    """How often the validator records its own uptime beacon (one PoOT task slot)."""
    peer_timeout_s: float = 5.0
    """Deadline of a call to a peer."""

    @classmethod
    def of(cls, settings: Settings, **overrides: object) -> ChainConfig:
        """The configuration of the validator ``settings.validator_index``."""
        count = max(1, settings.validators)
        if not 0 <= settings.validator_index < count:
            raise ValueError(
                f"validator {settings.validator_index} is not one of the {count} validators"
            )
        values: dict[str, object] = {
            "index": settings.validator_index,
            "validators": count,
            "host": settings.host,
            "ports": tuple(settings.validator_port(i) for i in range(count)),
            "keys_dir": settings.var_dir / "chain" / "validators",
            "block_interval_s": settings.block_interval_s,
            "leader_timeout_s": settings.leader_timeout_s,
            "sync_interval_s": min(1.0, max(0.2, settings.block_interval_s)),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def validator_id(self) -> str:
        """This validator's id."""
        return validator_id(self.index)

    @property
    def validator_ids(self) -> list[str]:
        """Every validator's id, in index order."""
        return [validator_id(i) for i in range(self.validators)]

    @property
    def peers(self) -> list[Peer]:
        """The other validators."""
        return [
            Peer(i, validator_id(i), self.host, self.ports[i])
            for i in range(self.validators)
            if i != self.index
        ]

    @property
    def collection_prefix(self) -> str:
        """The prefix of this validator's collections: ``chain_v<N>_``."""
        return collection_prefix(self.index)


def collection_prefix(index: int) -> str:
    """The collection prefix of validator ``index`` (for offline tools)."""
    return f"chain_v{index}_"
