"""Stake 2.0 on a hot wallet: freeze TRX for energy or bandwidth, unfreeze, withdraw.

Each operation is a signed transaction of the wallet, broadcast once per
idempotency key (the key is claimed in ``payments_stakes`` before anything is
signed; a repeat returns the first entry). What the network refuses comes back as
FAILED_PRECONDITION with its reason, e.g. a withdrawal before the 14-day delay.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.lib.clock import Clock
from lucid.payments.network import NetworkError, Outcome, TronNetwork
from lucid.payments.store.audit import AuditStore
from lucid.payments.store.base import StoreUnavailableError
from lucid.payments.wallets import Actor, Wallets
from lucid.runtime.errors import ErrorCode, LucidError


@dataclass
class StakeOperation:
    """One staking transaction of a wallet."""

    operation_id: str
    idempotency_key: str
    wallet_id: str
    address: str
    kind: str
    """``freeze``, ``unfreeze`` or ``withdraw``."""
    amount_sun: int
    resource: str
    txid: str
    create_time: float


@dataclass(frozen=True)
class ResourceStatus:
    """A wallet's stake and resources as the network reports them."""

    address: str
    frozen: dict[str, int]
    energy_limit: int
    energy_used: int
    net_limit: int
    net_used: int
    free_net_limit: int
    unfreezing: list[tuple[str, int, int]]
    """(resource, amount in sun, unlock time in ms)."""


class Staking:
    """Staking of hot wallets."""

    def __init__(
        self,
        operations: AsyncCollection[dict[str, Any]],
        network: TronNetwork,
        wallets: Wallets,
        audit: AuditStore,
        clock: Clock,
    ) -> None:
        self.operations = operations
        self.network = network
        self.wallets = wallets
        self.audit = audit
        self.clock = clock

    async def submit(
        self, actor: Actor, key: str, wallet_id: str, kind: str, *, amount_sun: int, resource: str
    ) -> StakeOperation:
        """Signs and broadcasts one staking transaction (once per key)."""
        try:
            known = await self.operations.find_one({"idempotency_key": key})
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        if known is not None:
            known.pop("_id", None)
            return StakeOperation(**known)
        wallet = await self.wallets.get(actor, wallet_id)
        signer = self.wallets.signer(wallet)
        try:
            tx = await self.network.sign_stake(kind, wallet.address, amount_sun, resource, signer)
            result = await self.network.broadcast(tx.signed)
        except NetworkError as exc:
            raise exc.as_lucid() from exc
        if result.outcome is Outcome.REFUSED:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"the network refused the {kind}: {result.message}",
                metadata={"code": result.code},
            )
        if result.outcome is Outcome.UNKNOWN:
            raise NetworkError(result.message).as_lucid()
        operation = StakeOperation(
            str(uuid.uuid4()), key, wallet_id, wallet.address, kind, amount_sun, resource,
            tx.txid, self.clock.timestamp(),
        )  # fmt: skip
        try:
            await self.operations.insert_one({"_id": operation.operation_id, **asdict(operation)})
        except DuplicateKeyError:
            pass  # a concurrent request with this key broadcast the same intent first
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        await self.audit.record(
            f"staking.{kind}", actor.display, details={"wallet_id": wallet_id, "txid": tx.txid}
        )
        return operation

    async def status(self, actor: Actor, wallet_id: str) -> ResourceStatus:
        wallet = await self.wallets.get(actor, wallet_id)
        try:
            account, resources = await self.network.account(wallet.address)
        except NetworkError as exc:
            raise exc.as_lucid() from exc
        frozen = {
            str(f.get("type", "BANDWIDTH")): int(f.get("amount", 0))
            for f in account.get("frozenV2", [])
        }
        return ResourceStatus(
            address=wallet.address,
            frozen=frozen,
            energy_limit=int(resources.get("EnergyLimit", 0)),
            energy_used=int(resources.get("EnergyUsed", 0)),
            net_limit=int(resources.get("NetLimit", 0)),
            net_used=int(resources.get("NetUsed", 0)),
            free_net_limit=int(resources.get("freeNetLimit", 0)),
            unfreezing=[
                (
                    str(u.get("type", "BANDWIDTH")),
                    int(u.get("unfreeze_amount", 0)),
                    int(u.get("unfreeze_expire_time", 0)),
                )
                for u in account.get("unfrozenV2", [])
            ],
        )
