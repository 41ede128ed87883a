"""``payments_transfers``: TRX and USDT sent from users' hot wallets (wallet transactions
and payments) and refunds sent from the payout hot wallet.

One collection for the three, told apart by ``kind``: each is one signed TRON transfer
followed to confirmation by ``lucid.payments.transfer_sender``. The caller's idempotency
key is unique per kind and owner (``scope_key``), so two requests with one key can never
both insert. The signed transaction is stored under ``tx`` before it is broadcast; every
change of state is a conditional update on the state it leaves.

A payment's refunds are a ledger: the n-th refund of a payment takes the unique
``slot`` ``<payment id>:<n>``, so of two refunds computed from the same ledger only one
is stored (a unique index is atomic in FerretDB, where a conditional update is not: it
filters before it writes, so two updates of one state can both match). The payment's
``refunded_micros`` and refund state are derived from the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lucid.payments import schema
from lucid.payments.store.base import DuplicateError, RecordStore, document_of, record_from
from lucid.payments.store.payouts import SentTx

WALLET_TRANSACTION = "wallet_transaction"
PAYMENT = "payment"
REFUND = "refund"

PENDING = "pending"
BROADCAST = "broadcast"
CONFIRMED = "confirmed"
FAILED = "failed"
PARTIALLY_REFUNDED = "partially_refunded"
REFUNDED = "refunded"
LIVE = (PENDING, BROADCAST)
"""States the sender still works on."""
REFUND_STATES = (CONFIRMED, PARTIALLY_REFUNDED, REFUNDED)
"""States of a confirmed payment, by how much of it was refunded."""


@dataclass
class TransferRecord:
    """One transfer of TRX (sun) or USDT (micro-USDT)."""

    transfer_id: str
    kind: str
    scope_key: str
    """``<kind>:<owner>:<idempotency key>``: unique."""
    idempotency_key: str
    user_id: str
    wallet_id: str
    from_address: str
    recipient: str
    currency: int
    """1 USDT, 2 TRX (``lucid.payments.v1.Currency``)."""
    amount_micros: int
    create_time: float
    update_time: float
    created_by: str
    memo: str = ""
    tx_type: int = 1
    """The wallet transaction's type (1 transfer, 2 payment)."""
    status: str = PENDING
    tx: SentTx | None = None
    attempts: int = 0
    """Transactions signed for it so far (a new one only after the last expired unseen)."""
    error_message: str = ""
    confirm_time: float = 0.0
    reference: str = ""
    webhook_url: str = ""
    refunded_micros: int = 0
    """A payment's refunds not failed (derived from the refund ledger)."""
    payment_id: str = ""
    """A refund's payment."""
    reason: str = ""
    slot: str = ""
    """Unique: ``<payment id>:<n>`` for the n-th refund of a payment, the id otherwise."""

    def to_doc(self) -> dict[str, Any]:
        return document_of(self, "transfer_id")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> TransferRecord:
        record = record_from(cls, doc)
        stored: Any = record.tx
        if stored:
            record.tx = SentTx(**stored)
        return record


class KeyTakenError(Exception):
    """The idempotency key is already taken by ``existing``."""

    def __init__(self, existing: TransferRecord) -> None:
        super().__init__(existing.scope_key)
        self.existing = existing


class SlotTakenError(Exception):
    """Another refund of the payment took the ledger slot first."""


class TransferStore(RecordStore[TransferRecord]):
    """Reads and writes transfers."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        super().__init__(db[schema.TRANSFERS], TransferRecord.from_doc)

    async def insert(self, record: TransferRecord) -> None:
        """Stores a new transfer; raises ``KeyTakenError`` if its scoped key is taken,
        ``SlotTakenError`` if its ledger slot is."""
        if not record.slot:
            record.slot = record.transfer_id
        try:
            await self.insert_doc(record.to_doc())
        except DuplicateError:
            existing = await self.by_key(record.scope_key)
            if existing is not None:
                raise KeyTakenError(existing) from None
            raise SlotTakenError(record.slot) from None

    async def refunds_of(self, payment_id: str) -> list[TransferRecord]:
        """A payment's refunds, oldest first."""
        return await self.many({"kind": REFUND, "payment_id": payment_id})

    async def get(self, transfer_id: str) -> TransferRecord | None:
        return await self.find({"_id": transfer_id})

    async def by_key(self, scope_key: str) -> TransferRecord | None:
        return await self.find({"scope_key": scope_key})

    async def move(
        self, transfer_id: str, from_states: Sequence[str], changes: Mapping[str, Any]
    ) -> TransferRecord | None:
        """Applies ``changes`` if the transfer is in one of ``from_states``."""
        return await self.update(
            {"_id": transfer_id, "status": {"$in": list(from_states)}}, changes
        )

    async def move_if(
        self, transfer_id: str, condition: Mapping[str, Any], changes: Mapping[str, Any]
    ) -> TransferRecord | None:
        return await self.update({"_id": transfer_id, **condition}, changes)
