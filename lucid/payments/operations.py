"""A hot wallet's own transactions: Stake 2.0 (freeze, unfreeze, withdraw) and USDT
(transfer, approve), each sent once per idempotency key.

The key is claimed in ``payments_stakes`` before anything is signed (a repeat returns
the first operation); the signed transaction is stored before it is broadcast. What the
network refuses comes back as FAILED_PRECONDITION with its reason (a withdrawal before
the 14-day delay) and frees the key, since nothing was admitted.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from lucid.lib.clock import Clock
from lucid.payments.network import NetworkError, Outcome, Receipt, TronNetwork
from lucid.payments.store.audit import AuditStore
from lucid.payments.store.base import DuplicateError, record_from, translated
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
    to: str = ""
    memo: str = ""


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


@dataclass(frozen=True)
class Rewards:
    """A wallet's voting rewards."""

    address: str
    claimable: int
    """In sun."""
    last_claim_ms: int
    """When rewards were last withdrawn (0: never)."""


class WalletOperations:
    """Transactions of hot wallets (staking, USDT), once per idempotency key."""

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
        self,
        actor: Actor,
        key: str,
        wallet_id: str,
        kind: str,
        *,
        amount_sun: int,
        resource: str = "",
        to: str = "",
        memo: str = "",
        fee_limit: int = 0,
    ) -> StakeOperation:
        """Signs and broadcasts one transaction of the wallet (once per key)."""
        wallet = await self.wallets.get(actor, wallet_id)
        signer = self.wallets.signer(wallet)
        operation = StakeOperation(
            str(uuid.uuid4()), key, wallet_id, wallet.address, kind, amount_sun, resource,
            "", self.clock.timestamp(), to=to, memo=memo,
        )  # fmt: skip
        try:
            async with translated():
                await self.operations.insert_one(
                    {"_id": operation.operation_id, **asdict(operation)}
                )
        except DuplicateError:
            known = await self.operations.find_one({"idempotency_key": key})
            assert known is not None
            return record_from(StakeOperation, known)
        params = {"amount": amount_sun, "resource": resource, "to": to, "memo": memo}
        params["fee_limit"] = fee_limit
        try:
            tx = await self.network.sign_wallet_tx(kind, wallet.address, params, signer)
            async with translated():
                await self.operations.update_one(
                    {"_id": operation.operation_id},
                    {"$set": {"txid": tx.txid, "signed": tx.signed}},
                )
            result = await self.network.broadcast(tx.signed)
        except NetworkError as exc:
            await self._release(operation)
            raise exc.as_lucid() from exc
        if result.outcome is Outcome.REFUSED:
            await self._release(operation)
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"the network refused the {kind}: {result.message}",
                metadata={"code": result.code},
            )
        operation.txid = tx.txid
        await self.audit.record(
            f"wallet.{kind}", actor.display, details={"wallet_id": wallet_id, "txid": tx.txid}
        )
        return operation

    async def transfers(
        self, actor: Actor, wallet_id: str
    ) -> list[tuple[StakeOperation, str, Receipt | None]]:
        """A wallet's USDT transfers, newest first, each with its state on the network
        (``pending``, ``broadcast``, ``confirmed`` once solid, ``failed``) and receipt."""
        await self.wallets.get(actor, wallet_id)
        async with translated():
            cursor = self.operations.find({"wallet_id": wallet_id, "kind": "transfer"})
            docs = [d async for d in cursor.sort("create_time", -1)]
        out: list[tuple[StakeOperation, str, Receipt | None]] = []
        for doc in docs:
            operation = record_from(StakeOperation, doc)
            state, receipt = "pending", None
            try:
                if operation.txid:
                    receipt = await self.network.receipt(operation.txid)
                    state = "broadcast"
                    if receipt is not None and receipt.result != "SUCCESS":
                        state = "failed"
                    elif receipt is not None and await self.network.receipt(
                        operation.txid, solid=True
                    ):
                        state = "confirmed"
            except NetworkError as exc:
                raise exc.as_lucid() from exc
            out.append((operation, state, receipt))
        return out

    async def _release(self, operation: StakeOperation) -> None:
        """Frees a key whose transaction the node never admitted (refused, or never sent)."""
        async with translated():
            await self.operations.delete_one({"_id": operation.operation_id})

    async def rewards(self, actor: Actor, wallet_id: str) -> Rewards:
        """A wallet's voting rewards as the network reports them: claimable now
        (``getReward`` plus the account's ``allowance``) and the last claim."""
        wallet = await self.wallets.get(actor, wallet_id)
        try:
            account, _ = await self.network.account(wallet.address)
            reward = await self.network.reward(wallet.address)
        except NetworkError as exc:
            raise exc.as_lucid() from exc
        return Rewards(
            address=wallet.address,
            claimable=reward + int(account.get("allowance", 0)),
            last_claim_ms=int(account.get("latest_withdraw_time", 0)),
        )

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
