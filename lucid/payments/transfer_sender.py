"""The transfer worker: sends wallet transactions, payments and refunds exactly once and
follows them to confirmation, across crashes of this process.

The rules are the payouts' (``lucid.payments.sender``), for transfers signed by the
sending wallet's own key:

1. A transfer's transaction is signed and stored (``attempts`` bumped conditionally on
   ``tx`` being empty) *before* it is broadcast, so two senders (the rpc that made the
   transfer and this worker) can never both store one, and the one not stored is never
   broadcast.
2. A process that dies after signing finds the stored transaction on its next start
   (every live transfer is looked at each pass) and broadcasts the same bytes (same
   txID); ``DUP_TRANSACTION_ERROR`` means the network already has it.
3. When a broadcast's outcome is unknown, the transaction is looked up by txID and
   re-broadcast while unexpired; a new one is signed only once the old one has expired
   (plus a margin) unseen, so the old one can no longer pay.
4. A refusal that only says the transaction is stale (TaPoS, expiration) signs a new
   one; any other refusal fails the transfer with the node's reason (nothing was sent).
   A mined REVERT or OUT_OF_ENERGY fails it too; SUCCESS is confirmed once the node's
   solid view (19 blocks) has it.
5. A refund that fails or is confirmed refreshes its payment's refunded amount and
   state (derived from the payment's refund ledger: failed refunds count for nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict

from lucid.lib.clock import Clock
from lucid.payments.network import NetworkError, Outcome, Receipt, TronNetwork
from lucid.payments.stepping import keep_stepping
from lucid.payments.store.audit import AuditStore
from lucid.payments.store.payouts import SentTx
from lucid.payments.store.transfers import (
    BROADCAST,
    CONFIRMED,
    FAILED,
    LIVE,
    PARTIALLY_REFUNDED,
    PENDING,
    REFUND,
    REFUND_STATES,
    REFUNDED,
    TransferRecord,
    TransferStore,
)
from lucid.payments.wallets import Wallets
from lucid.runtime.errors import LucidError

log = logging.getLogger("lucid.payments.transfers")
RETIRE_CODES = frozenset({"TAPOS_ERROR", "TRANSACTION_EXPIRATION_ERROR"})
MAX_ATTEMPTS = 10
REFRESH_TRIES = 3


class TransferSender:
    """Moves transfers from pending to confirmed or failed."""

    def __init__(
        self,
        store: TransferStore,
        network: TronNetwork,
        wallets: Wallets,
        audit: AuditStore,
        clock: Clock,
        *,
        poll_s: float,
        tx_lifetime_s: float = 60.0,
        expiry_margin_s: float = 10.0,
    ) -> None:
        self.store = store
        self.network = network
        self.wallets = wallets
        self.audit = audit
        self.clock = clock
        self.poll_s = poll_s
        self.tx_lifetime_s = tx_lifetime_s
        self.expiry_margin_s = expiry_margin_s
        self.head = 0
        self.busy: set[str] = set()
        """Transfers being moved on in this process (by an rpc or a pass): skipped by
        the next pass, so one process never works one transfer twice at once."""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Works until cancelled: at every wake-up or poll interval."""
        await keep_stepping(self.step, self._wake, self.poll_s, "transfer step")

    async def step(self) -> None:
        """One pass over every live transfer (signed or not)."""
        with contextlib.suppress(NetworkError):
            self.head = await self.network.head_number()
        live = await self.store.many({"status": {"$in": list(LIVE)}})
        await asyncio.gather(*(self.advance(t) for t in live if t.transfer_id not in self.busy))

    @contextlib.contextmanager
    def holding(self, transfer_id: str) -> Iterator[bool]:
        """Holds a transfer for the caller (True), unless already held in this process
        (False). One event loop: the check and the hold cannot interleave."""
        if transfer_id in self.busy:
            yield False
            return
        self.busy.add(transfer_id)
        try:
            yield True
        finally:
            self.busy.discard(transfer_id)

    async def advance(self, transfer: TransferRecord) -> TransferRecord:
        """Moves one transfer on as far as it goes now, unless it is held; the transfer
        after."""
        with self.holding(transfer.transfer_id) as mine:
            if not mine:
                return await self._current(transfer)
            return await self.move_on(transfer)

    async def move_on(self, transfer: TransferRecord) -> TransferRecord:
        """``advance`` for a caller that holds the transfer already."""
        try:
            if transfer.tx is None:
                signed = await self._sign(transfer)
                if signed is None:
                    return await self._current(transfer)
                transfer = signed
            await self._follow(transfer)
        except NetworkError as exc:
            log.warning("transfer %s: the network failed: %s", transfer.transfer_id, exc)
        return await self._current(transfer)

    async def _current(self, transfer: TransferRecord) -> TransferRecord:
        return await self.store.get(transfer.transfer_id) or transfer

    async def _sign(self, transfer: TransferRecord) -> TransferRecord | None:
        if transfer.attempts >= MAX_ATTEMPTS:
            await self._fail(transfer, "too many expired transactions")
            return None
        wallet = await self.wallets.record(transfer.wallet_id)
        if wallet is None:
            await self._fail(transfer, "the wallet no longer exists")
            return None
        try:
            sign = self.wallets.signer(wallet)
        except LucidError as exc:
            await self._fail(transfer, f"the wallet cannot sign: {exc.message}")
            return None
        tx = await self.network.sign_transfer(
            transfer.currency,
            transfer.from_address,
            transfer.recipient,
            transfer.amount_micros,
            sign,
            memo=transfer.memo,
            lifetime_ms=int(self.tx_lifetime_s * 1000),
        )
        stored = await self.store.move_if(
            transfer.transfer_id,
            {"status": PENDING, "attempts": transfer.attempts, "tx": None},
            {"tx": asdict(tx), "attempts": transfer.attempts + 1},
        )
        if stored is not None:
            await self._audit(f"{transfer.kind}.signed", stored, txid=tx.txid)
        return stored  # None: signed by another first; this transaction is never sent

    async def _follow(self, transfer: TransferRecord) -> None:
        tx = transfer.tx
        assert tx is not None
        receipt = await self.network.receipt(tx.txid)
        if receipt is not None:
            await self._mined(transfer, tx, receipt)
            return
        now_ms = self.clock.timestamp() * 1000
        if now_ms < tx.expiration_ms:
            result = await self.network.broadcast(tx.signed)
            if result.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE):
                moved = await self.store.move(
                    transfer.transfer_id,
                    [PENDING],
                    {"status": BROADCAST, "update_time": self.clock.timestamp()},
                )
                if moved is not None:
                    await self._audit(f"{transfer.kind}.broadcast", moved, txid=tx.txid)
            elif result.outcome is Outcome.REFUSED:
                if result.code in RETIRE_CODES:
                    await self._retire(transfer, tx)
                else:
                    await self.store.move_if(
                        transfer.transfer_id,
                        {"tx.txid": tx.txid},
                        {"tx.result": result.code, "tx.result_message": result.message},
                    )
                    await self._fail(transfer, f"{result.code}: {result.message}".strip(": "))
            return
        if now_ms < tx.expiration_ms + self.expiry_margin_s * 1000:
            return
        await self._retire(transfer, tx)  # expired and unknown to the network

    async def _retire(self, transfer: TransferRecord, tx: SentTx) -> None:
        """Drops a transaction that can never be mined, so a new one is signed."""
        moved = await self.store.move_if(
            transfer.transfer_id,
            {"tx.txid": tx.txid, "status": {"$in": list(LIVE)}},
            {"tx": None, "status": PENDING, "update_time": self.clock.timestamp()},
        )
        if moved is not None:
            await self._audit(f"{transfer.kind}.tx_expired", moved, txid=tx.txid)
            self.wake()

    async def _mined(self, transfer: TransferRecord, tx: SentTx, receipt: Receipt) -> None:
        details = {
            "tx.block_number": receipt.block_number,
            "tx.block_time": receipt.block_time_ms / 1000,
            "tx.fee_sun": receipt.fee_sun,
            "tx.energy_used": receipt.energy_used,
            "tx.bandwidth_used": receipt.bandwidth_used,
            "tx.result": receipt.result,
            "tx.result_message": receipt.message,
            "update_time": self.clock.timestamp(),
        }
        if receipt.result != "SUCCESS":
            await self.store.move(transfer.transfer_id, list(LIVE), details)
            await self._fail(transfer, f"{receipt.result}: {receipt.message}".strip(": "))
            return
        solid = await self.network.receipt(tx.txid, solid=True)
        if solid is not None:  # the head read at the start of the pass may predate it
            self.head = max(self.head, await self.network.head_number())
        if solid is None:
            await self.store.move(
                transfer.transfer_id, list(LIVE), {**details, "status": BROADCAST}
            )
            return
        confirmed = await self.store.move(
            transfer.transfer_id,
            list(LIVE),
            {**details, "status": CONFIRMED, "confirm_time": self.clock.timestamp()},
        )
        if confirmed is not None:
            await self._audit(f"{transfer.kind}.confirmed", confirmed, txid=tx.txid)
            if confirmed.kind == REFUND:
                await self.refresh_payment(confirmed.payment_id)

    async def _fail(self, transfer: TransferRecord, reason: str) -> None:
        moved = await self.store.move(
            transfer.transfer_id,
            list(LIVE),
            {"status": FAILED, "error_message": reason, "update_time": self.clock.timestamp()},
        )
        if moved is None:
            return
        await self._audit(f"{transfer.kind}.failed", moved, reason=reason)
        if moved.kind == REFUND:
            await self.refresh_payment(moved.payment_id)

    async def refresh_payment(self, payment_id: str) -> TransferRecord | None:
        """Writes a confirmed payment's refunded amount and state as its refund ledger
        says (written again if the ledger changed meanwhile); the payment after."""
        payment = None
        for _ in range(REFRESH_TRIES):
            refunds = await self.store.refunds_of(payment_id)
            refunded = sum(r.amount_micros for r in refunds if r.status != FAILED)
            payment = await self.store.get(payment_id)
            if payment is None or payment.status not in REFUND_STATES:
                return payment
            state = CONFIRMED
            if refunded:
                state = REFUNDED if refunded >= payment.amount_micros else PARTIALLY_REFUNDED
            payment = await self.store.move(
                payment_id,
                list(REFUND_STATES),
                {
                    "refunded_micros": refunded,
                    "status": state,
                    "update_time": self.clock.timestamp(),
                },
            )
            after = await self.store.refunds_of(payment_id)
            if len(after) == len(refunds) and [r.status for r in after] == [
                r.status for r in refunds
            ]:
                break
        return payment

    async def _audit(self, action: str, transfer: TransferRecord, **details: str) -> None:
        await self.audit.record(
            action,
            "payments",
            details={"transfer_id": transfer.transfer_id, "kind": transfer.kind, **details},
        )
