"""Wallet transactions, payments and refunds: the rules before anything is signed.

A user sends TRX or USDT from one of their own active hot wallets (a wallet
transaction; a payment is one with a reference and a webhook URL). Everything a
request can get wrong is refused before anything is stored: an unknown or foreign
wallet, a wallet that cannot sign, a currency other than the wallet's, a bad or own
recipient address, too little USDT (or no TRX for its fees) or too little TRX. A
repeated idempotency key returns the first transfer and sends nothing; the same key
with other terms is refused (ALREADY_EXISTS). A refund of a confirmed payment goes
from the payout hot wallet back to the paying wallet; it takes the next slot of the
payment's refund ledger (a unique index), so refunds never together exceed the payment. Sending is
``lucid.payments.transfer_sender``'s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from lucid.lib.clock import Clock
from lucid.payments.network import NetworkError, TronNetwork
from lucid.payments.store.audit import AuditStore
from lucid.payments.store.transfers import (
    FAILED,
    PAYMENT,
    REFUND,
    REFUND_STATES,
    WALLET_TRANSACTION,
    KeyTakenError,
    SlotTakenError,
    TransferRecord,
    TransferStore,
)
from lucid.payments.transfer_sender import TransferSender
from lucid.payments.wallets import Actor, Wallets, check_address
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError

USDT, TRX = 1, 2
REFUND_TRIES = 20
"""Slots of a payment's refund ledger one request tries before giving up (busy)."""


@dataclass(frozen=True)
class Send:
    """What a caller asks to send from one of their wallets."""

    idempotency_key: str
    wallet_id: str
    currency: int
    amount_micros: int
    recipient: str
    memo: str = ""
    tx_type: int = 1
    reference: str = ""
    webhook_url: str = ""


def _owner(actor: Actor) -> str:
    return actor.user_id or actor.display


def _invalid(field: str, message: str) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
        message,
        field_violations=[FieldViolation(field, message)],
    )


class Transfers:
    """Creates and reads wallet transactions, payments and refunds."""

    def __init__(
        self,
        store: TransferStore,
        network: TronNetwork,
        wallets: Wallets,
        sender: TransferSender,
        *,
        audit: AuditStore,
        clock: Clock,
    ) -> None:
        self.store = store
        self.network = network
        self.wallets = wallets
        self.sender = sender
        self.audit = audit
        self.clock = clock

    async def send(self, actor: Actor, kind: str, request: Send) -> TransferRecord:
        """A wallet transaction or payment (``kind``), sent once per idempotency key."""
        scope_key = f"{kind}:{_owner(actor)}:{request.idempotency_key}"
        known = await self.store.by_key(scope_key)
        if known is not None:
            return self._same(known, request)
        check_address(request.recipient, "recipient_address")
        wallet = await self.wallets.get(actor, request.wallet_id)
        if not actor.user_id or wallet.user_id != actor.user_id:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED, "only the wallet's owner sends from it"
            )
        self.wallets.signer(wallet)  # a hot, active wallet with a key, or refused
        if request.currency != wallet.currency:
            raise _invalid("currency", "the currency is not the wallet's")
        if request.recipient == wallet.address:
            raise _invalid("recipient_address", "a wallet cannot send to itself")
        await self._ensure_funds(wallet.address, request.currency, request.amount_micros)
        now = self.clock.timestamp()
        record = TransferRecord(
            transfer_id=str(uuid.uuid4()),
            kind=kind,
            scope_key=scope_key,
            idempotency_key=request.idempotency_key,
            user_id=wallet.user_id,
            wallet_id=wallet.wallet_id,
            from_address=wallet.address,
            recipient=request.recipient,
            currency=request.currency,
            amount_micros=request.amount_micros,
            create_time=now,
            update_time=now,
            created_by=actor.display,
            memo=request.memo,
            tx_type=request.tx_type,
            reference=request.reference,
            webhook_url=request.webhook_url,
        )
        with self.sender.holding(record.transfer_id):  # the worker waits for this rpc
            try:
                await self.store.insert(record)
            except KeyTakenError as taken:
                return self._same(taken.existing, request)
            await self.audit.record(
                f"{kind}.created", actor.display,
                details={"transfer_id": record.transfer_id, "amount_micros": record.amount_micros},
            )  # fmt: skip
            return await self.sender.move_on(record)

    @staticmethod
    def _same(known: TransferRecord, request: Send) -> TransferRecord:
        terms = (known.wallet_id, known.currency, known.amount_micros, known.recipient)
        asked = (request.wallet_id, request.currency, request.amount_micros, request.recipient)
        if terms != asked:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                "this idempotency key was used for another transfer",
                metadata={"transfer_id": known.transfer_id},
            )
        return known

    async def _ensure_funds(self, address: str, currency: int, amount: int) -> None:
        try:
            trx = await self.network.trx_balance(address)
            usdt = await self.network.usdt_balance(address) if currency == USDT else 0
        except NetworkError as exc:
            raise exc.as_lucid() from exc
        if currency == USDT and usdt < amount:
            raise LucidError(
                ErrorCode.ERROR_CODE_INSUFFICIENT_BALANCE,
                "the wallet holds too little USDT",
                metadata={"asset": "USDT"},
            )
        if currency == USDT and trx <= 0:
            raise LucidError(
                ErrorCode.ERROR_CODE_INSUFFICIENT_BALANCE,
                "the wallet has no TRX for fees",
                metadata={"asset": "TRX"},
            )
        if currency == TRX and trx < amount:
            raise LucidError(
                ErrorCode.ERROR_CODE_INSUFFICIENT_BALANCE,
                "the wallet holds too little TRX",
                metadata={"asset": "TRX"},
            )

    async def wallet_transaction(
        self, actor: Actor, wallet_id: str, transfer_id: str
    ) -> TransferRecord:
        await self.wallets.get(actor, wallet_id)
        found = await self.store.find(
            {
                "_id": transfer_id,
                "wallet_id": wallet_id,
                "kind": {"$in": [WALLET_TRANSACTION, PAYMENT]},
            }
        )
        if found is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such transaction of this wallet")
        return found

    async def wallet_transactions(
        self, actor: Actor, wallet_id: str, statuses: list[str], offset: int, limit: int
    ) -> tuple[list[TransferRecord], int]:
        await self.wallets.get(actor, wallet_id)
        query: dict[str, Any] = {
            "wallet_id": wallet_id,
            "kind": {"$in": [WALLET_TRANSACTION, PAYMENT]},
        }
        if statuses:
            query["status"] = {"$in": statuses}
        return await self.store.page(query, offset, limit)

    async def payment(
        self, actor: Actor, payment_id: str
    ) -> tuple[TransferRecord, list[TransferRecord]]:
        """A payment the caller may see, and its refunds (oldest first)."""
        found = await self.store.find({"_id": payment_id, "kind": PAYMENT})
        if found is None or not actor.may_see(found.user_id):
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such payment")
        refunds = await self.store.many({"kind": REFUND, "payment_id": payment_id})
        return found, refunds

    async def payments(
        self, actor: Actor, filters: dict[str, Any], offset: int, limit: int
    ) -> tuple[list[TransferRecord], int]:
        user_id = filters.pop("user_id", "")
        if user_id and not actor.may_see(user_id):
            raise LucidError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, "not your payments")
        query: dict[str, Any] = {"kind": PAYMENT, **filters}
        if user_id or not actor.sees_all:
            query["user_id"] = user_id or actor.user_id
        return await self.store.page(query, offset, limit)

    async def refund(
        self, actor: Actor, payment_id: str, amount: int, reason: str, key: str
    ) -> tuple[TransferRecord, TransferRecord]:
        """Refunds ``amount`` (0: what remains) of a confirmed payment, once per key."""
        scope_key = f"{REFUND}:{payment_id}:{key}"
        known = await self.store.by_key(scope_key)
        if known is not None:
            return known, await self._payment(payment_id)
        payment = await self._payment(payment_id)
        if payment.status not in REFUND_STATES:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"only a confirmed payment can be refunded; this one is {payment.status}",
            )
        hot = await self.wallets.payout_wallet()
        for _ in range(REFUND_TRIES):
            ledger = await self.store.refunds_of(payment_id)
            remaining = payment.amount_micros - sum(
                r.amount_micros for r in ledger if r.status != FAILED
            )
            if remaining <= 0:
                raise LucidError(
                    ErrorCode.ERROR_CODE_INVALID_STATE, "the payment is wholly refunded"
                )
            wanted = amount or remaining
            if wanted > remaining:
                raise _invalid("amount_micros", f"at most {remaining} remains to refund")
            await self._ensure_funds(hot.address, payment.currency, wanted)
            now = self.clock.timestamp()
            record = TransferRecord(
                transfer_id=str(uuid.uuid4()),
                kind=REFUND,
                scope_key=scope_key,
                idempotency_key=key,
                user_id=payment.user_id,
                wallet_id=hot.wallet_id,
                from_address=hot.address,
                recipient=payment.from_address,
                currency=payment.currency,
                amount_micros=wanted,
                create_time=now,
                update_time=now,
                created_by=actor.display,
                payment_id=payment_id,
                reason=reason,
                slot=f"{payment_id}:{len(ledger)}",
            )
            try:
                await self.store.insert(record)
            except KeyTakenError as taken:
                return taken.existing, await self._payment(payment_id)
            except SlotTakenError:
                continue  # another refund took this slot: count again
            break
        else:
            raise LucidError(
                ErrorCode.ERROR_CODE_CONCURRENCY_LIMIT, "the payment is busy; try again"
            )
        await self.audit.record(
            "refund.created", actor.display,
            details={"transfer_id": record.transfer_id, "payment_id": payment_id,
                     "amount_micros": record.amount_micros, "reason": reason},
        )  # fmt: skip
        await self.sender.refresh_payment(payment_id)
        refund = await self.sender.advance(record)
        return refund, await self._payment(payment_id)

    async def _payment(self, payment_id: str) -> TransferRecord:
        found = await self.store.find({"_id": payment_id, "kind": PAYMENT})
        if found is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such payment")
        return found
