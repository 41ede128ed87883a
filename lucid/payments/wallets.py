"""Wallets: keys from the OS CSPRNG, sealed at rest, unsealed only inside the signer.

The payout hot wallet is created on first start (its id is fixed, so two starts
cannot make two). No record, response or log line ever carries a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tronpy.async_tron import AsyncTransaction
from tronpy.keys import PrivateKey

from lucid.lib import tron
from lucid.lib.clock import Clock
from lucid.lib.sealing import Sealer
from lucid.payments.store.wallets import AddressTakenError, WalletRecord, WalletStore
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError

HOT_WALLET_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "lucid:payments:payout-hot-wallet"))
TYPES = ("hot", "cold", "multisig", "hardware")
STATUSES = ("active", "inactive", "locked", "archived")


@dataclass(frozen=True)
class Actor:
    """Who asks: a user (and whether they may see everyone's), or a service."""

    display: str
    user_id: str = ""
    sees_all: bool = False

    def may_see(self, owner: str) -> bool:
        return self.sees_all or (bool(self.user_id) and owner == self.user_id)


def check_address(address: str, field: str) -> None:
    """Refuses an address that is not Base58Check TRON (INVALID_ARGUMENT)."""
    try:
        tron.decode_address(address)
    except tron.InvalidAddressError as exc:
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            f"{field} is not a TRON address",
            field_violations=[FieldViolation(field, str(exc))],
        ) from None


class Wallets:
    """Wallet records and the signer of hot wallets."""

    def __init__(
        self, store: WalletStore, sealer: Sealer, clock: Clock, provisioned: Path | None = None
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.clock = clock
        self.provisioned = provisioned
        """A sealed key file the payout hot wallet is made from on first start, if it exists
        (``lucid up`` writes one so the devnet's genesis can fund its address)."""

    def _new_hot(
        self, wallet_id: str, user_id: str, name: str, purpose: str, sealed: bytes = b""
    ) -> WalletRecord:
        key = PrivateKey(self.sealer.unseal(sealed)) if sealed else PrivateKey.random()
        now = self.clock.timestamp()
        return WalletRecord(
            wallet_id=wallet_id,
            user_id=user_id,
            name=name,
            address=str(key.public_key.to_base58check_address()),
            currency=1,
            wallet_type="hot",
            status="active",
            create_time=now,
            update_time=now,
            sealed_key=sealed or self.sealer.seal(key.to_bytes()),
            purpose=purpose,
        )

    async def payout_wallet(self) -> WalletRecord:
        """The payout hot wallet, created on first use."""
        found = await self.store.find({"_id": HOT_WALLET_ID})
        if found is not None:
            return found
        sealed = b""
        if self.provisioned is not None and self.provisioned.exists():
            sealed = await asyncio.to_thread(self.provisioned.read_bytes)
        record = self._new_hot(HOT_WALLET_ID, "", "payout hot wallet", "payout", sealed)
        with contextlib.suppress(AddressTakenError):  # another start made it meanwhile
            await self.store.insert(record)
        found = await self.store.find({"_id": HOT_WALLET_ID})
        assert found is not None
        return found

    def signer(self, record: WalletRecord) -> Callable[[AsyncTransaction], None]:
        """Signs a transaction with the wallet's key, unsealed for that moment only."""
        if record.wallet_type != "hot" or not record.sealed_key:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_ALLOWED, "this wallet cannot sign")
        if record.status != "active":
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, f"the wallet is {record.status}")

        def sign(txn: AsyncTransaction) -> None:
            key = PrivateKey(self.sealer.unseal(record.sealed_key))
            txn.sign(key)

        return sign

    async def create(
        self, actor: Actor, name: str, currency: int, wallet_type: str, address: str
    ) -> WalletRecord:
        """A new wallet of the caller: a fresh key for a hot one, a watched address else."""
        if wallet_type == "hot":
            record = self._new_hot(str(uuid.uuid4()), actor.user_id, name, "")
            record.currency = currency
        else:
            check_address(address, "address")
            now = self.clock.timestamp()
            record = WalletRecord(
                str(uuid.uuid4()), actor.user_id, name, address, currency, wallet_type,
                "active", now, now,
            )  # fmt: skip
        try:
            await self.store.insert(record)
        except AddressTakenError:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, "a wallet with this address exists"
            ) from None
        return record

    async def record(self, wallet_id: str) -> WalletRecord | None:
        """A wallet by id, whoever owns it (for the signer of its own stored transfers)."""
        return await self.store.find({"_id": wallet_id})

    async def get(self, actor: Actor, wallet_id: str) -> WalletRecord:
        record = await self.store.find({"_id": wallet_id})
        if record is None or not actor.may_see(record.user_id):
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such wallet")
        return record

    async def update(self, actor: Actor, wallet_id: str, name: str, status: str) -> WalletRecord:
        """Renames a wallet or changes its state (archived: ``delete``)."""
        record = await self.get(actor, wallet_id)
        if record.wallet_id == HOT_WALLET_ID and status not in ("", record.status):
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_ALLOWED,
                "the payout wallet's state follows SetPayoutFreeze, not UpdateWallet",
            )
        changes: dict[str, object] = {"update_time": self.clock.timestamp()}
        if name:
            changes["name"] = name
        if status:
            changes["status"] = status
        updated = await self.store.update(record.wallet_id, changes)
        if updated is None:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "the wallet is archived")
        return updated

    async def list(
        self, actor: Actor, user_id: str, status: str, currency: int, *, offset: int, limit: int
    ) -> tuple[list[WalletRecord], int]:
        owner = user_id or actor.user_id
        if user_id and not actor.may_see(user_id):
            raise LucidError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, "not your wallets")
        query: dict[str, object] = {}
        if owner or not actor.sees_all:
            query["user_id"] = owner
        if status:
            query["status"] = status
        if currency:
            query["currency"] = currency
        return await self.store.page(query, offset, limit)
