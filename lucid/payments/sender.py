"""The payout worker: sends pending payouts exactly once and follows them to confirmation.

The rules that make a payout paid once, whatever dies when:

1. A pending payout is claimed by one conditional update (pending → processing).
2. Its transaction is signed and stored (with ``attempts`` bumped conditionally)
   *before* it is broadcast; a process that dies after signing finds it on restart
   and broadcasts the same bytes (same txID) again.
3. ``DUP_TRANSACTION_ERROR`` means the network already has it: sent.
4. When the outcome of a broadcast is unknown (timeout, lost answer, dead node),
   the stored transaction is looked up by txID; it is re-broadcast while it has
   not expired, and a *new* transaction is signed only once the old one has
   expired (plus a margin) and the network still does not know it: an expired
   transaction can never be mined, so the old one can no longer pay.
5. A mined transaction is final for the payout: SUCCESS is followed until the
   node's solid (irreversible, 19 blocks) view has it → confirmed; REVERT or
   OUT_OF_ENERGY → failed with the reason (nothing was paid).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import grpc

from lucid.lib.clock import Clock
from lucid.payments.network import NetworkError, Outcome, Receipt, TronNetwork
from lucid.payments.stepping import keep_stepping
from lucid.payments.store.audit import AuditStore
from lucid.payments.store.payouts import (
    BROADCAST,
    CONFIRMED,
    FAILED,
    PENDING,
    PROCESSING,
    PayoutRecord,
    PayoutStore,
    SentTx,
)
from lucid.payments.store.wallets import WalletRecord
from lucid.payments.wallets import Wallets
from lucid.runtime.breaker import BreakerPolicy, CircuitBreaker, CircuitOpenError
from lucid.runtime.errors import ErrorCode, LucidError

log = logging.getLogger("lucid.payments.sender")
RETIRE_CODES = frozenset({"TAPOS_ERROR", "TRANSACTION_EXPIRATION_ERROR"})
"""Refusals that only say this transaction is stale: a fresh one may succeed."""
MAX_ATTEMPTS = 10
"""Transactions signed for one payout at most (each only after the last expired)."""
TRON_BREAKER = BreakerPolicy(
    failure_threshold=5, open_s=300.0, success_threshold=3, half_open_calls=3
)
"""Spec 07 §4: 5 failures, 300 s recovery, 3 half-open calls."""
MAX_RETRIES = 3
"""Tries of a payout after the first (automatic ones and ``RetryPayout`` alike)."""
RETRY_BACKOFF_S = 30.0
"""A try that sent nothing (the hot wallet short of USDT) is repeated this long after,
doubling each time, until ``MAX_RETRIES``; then the payout fails."""
SEND_LEAD_S = 300.0
"""A scheduled (hourly, daily, weekly) payout is sent this long before its estimated
completion, the time an immediate one is given (spec 07: ETA +5 min)."""


def due(now: float) -> dict[str, Any]:
    """The pending payouts to send at ``now``: immediate ones at once, scheduled ones
    (HOURLY, DAILY, WEEKLY) once their estimated completion is ``SEND_LEAD_S`` away; one
    put back for a retry once its ``retry_after`` has passed."""
    return {
        "status": PENDING,
        "$and": [
            {
                "$or": [
                    {"batch_type": {"$in": [0, 1]}},
                    {"estimated_completion_time": {"$lte": now + SEND_LEAD_S}},
                ]
            },
            {"$or": [{"retry_after": {"$lte": now}}, {"retry_after": {"$exists": False}}]},
        ],
    }


class PayoutSender:
    """Moves payouts from pending to confirmed or failed."""

    def __init__(
        self,
        store: PayoutStore,
        network: TronNetwork,
        wallets: Wallets,
        audit: AuditStore,
        clock: Clock,
        *,
        poll_s: float,
        tx_lifetime_s: float = 60.0,
        expiry_margin_s: float = 10.0,
        max_concurrent: Callable[[], int] = lambda: 10,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.store = store
        self.network = network
        self.wallets = wallets
        self.audit = audit
        self.clock = clock
        self.poll_s = poll_s
        self.tx_lifetime_s = tx_lifetime_s
        self.expiry_margin_s = expiry_margin_s
        self.max_concurrent = max_concurrent
        self.frozen = False
        """While frozen, nothing new is signed; sent payouts are still followed."""
        self.head = 0
        self.network_failures = 0
        """Consecutive passes in which the node could not be reached."""
        self.breaker = breaker or CircuitBreaker("tron", TRON_BREAKER, clock)
        """Opens after 5 sends whose outcome the node left unknown; while open nothing new
        is signed (sent payouts are still followed); half-open, 3 trial sends close it."""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def ensure_funds(self, amount_micros: int) -> None:
        """Refuses a payout the hot wallet cannot cover (USDT, and TRX for fees)."""
        wallet = await self.wallets.payout_wallet()
        try:
            usdt = await self.network.usdt_balance(wallet.address)
            trx = await self.network.trx_balance(wallet.address)
        except NetworkError as exc:
            raise exc.as_lucid() from exc
        if usdt < amount_micros:
            raise LucidError(
                ErrorCode.ERROR_CODE_INSUFFICIENT_BALANCE,
                "the payout hot wallet holds too little USDT",
                metadata={"asset": "USDT"},
            )
        if trx <= 0:
            raise LucidError(
                ErrorCode.ERROR_CODE_INSUFFICIENT_BALANCE,
                "the payout hot wallet has no TRX for fees",
                metadata={"asset": "TRX"},
            )

    async def run(self) -> None:
        """Works until cancelled: at every wake-up or poll interval."""
        await keep_stepping(self.step, self._wake, self.poll_s, "payout step")

    async def step(self) -> None:
        """One pass: follow sent payouts, then claim pending ones up to the concurrency."""
        try:
            self.head = await self.network.head_number()
            self.network_failures = 0
        except NetworkError:
            self.network_failures += 1
        active = await self.store.many({"status": {"$in": [PROCESSING, BROADCAST]}})
        if not self.frozen:
            room = self.max_concurrent() - len(active)
            if room > 0:
                pending = await self.store.many(due(self.clock.timestamp()), limit=room)
                for record in pending:
                    claimed = await self.store.move(
                        record.payout_id,
                        [PENDING],
                        {"status": PROCESSING, "update_time": self.clock.timestamp()},
                    )
                    if claimed is not None:
                        active.append(claimed)
        if active:
            wallet = await self.wallets.payout_wallet()
            await asyncio.gather(*(self._advance(p, wallet) for p in active))

    async def _advance(self, payout: PayoutRecord, wallet: WalletRecord) -> None:
        try:
            if payout.tx is None:
                await self._send(payout, wallet)
            else:
                await self._follow(payout)
        except NetworkError as exc:
            log.warning("payout %s: the network failed: %s", payout.payout_id, exc)

    async def _send(self, payout: PayoutRecord, wallet: WalletRecord) -> None:
        """Signs a new transaction and broadcasts it, through the breaker."""
        try:
            ticket = self.breaker.acquire()
        except CircuitOpenError:
            return  # stays processing without a transaction until the breaker lets it
        outcome: Outcome | None = None
        try:
            signed = await self._sign(payout, wallet)
            if signed is not None:
                outcome = await self._follow(signed)
        except NetworkError:
            self.breaker.record(grpc.StatusCode.UNAVAILABLE, ticket)
            raise
        failed = outcome is Outcome.UNKNOWN
        self.breaker.record(grpc.StatusCode.UNAVAILABLE if failed else grpc.StatusCode.OK, ticket)

    async def _sign(self, payout: PayoutRecord, wallet: WalletRecord) -> PayoutRecord | None:
        if payout.attempts >= MAX_ATTEMPTS:
            await self._fail(payout, [PROCESSING], "too many expired transactions")
            return None
        usdt = await self.network.usdt_balance(wallet.address)
        if usdt < payout.amount_micros:
            await self._later(payout, "insufficient USDT in the payout hot wallet")
            return None
        tx = await self.network.sign_usdt_transfer(
            wallet.address,
            payout.recipient,
            payout.amount_micros,
            self.wallets.signer(wallet),
            lifetime_ms=int(self.tx_lifetime_s * 1000),
        )
        stored = await self.store.move_if(
            payout.payout_id,
            {"status": PROCESSING, "attempts": payout.attempts, "tx": None},
            {"tx": asdict(tx), "attempts": payout.attempts + 1},
        )
        if stored is not None:
            await self.audit.record(
                "payout.signed", "payments", payout_id=payout.payout_id, details={"txid": tx.txid}
            )
        return stored  # None: someone else signed it first; this transaction is never sent

    async def _follow(self, payout: PayoutRecord) -> Outcome | None:
        """Moves a payout with a transaction on; the broadcast's outcome if one was made."""
        tx = payout.tx
        assert tx is not None
        receipt = await self.network.receipt(tx.txid)
        if receipt is not None:
            await self._mined(payout, tx, receipt)
            return None
        now_ms = self.clock.timestamp() * 1000
        if now_ms < tx.expiration_ms:
            result = await self.network.broadcast(tx.signed)
            if result.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE):
                if payout.status == PROCESSING:
                    await self.store.move(
                        payout.payout_id,
                        [PROCESSING],
                        {"status": BROADCAST, "update_time": self.clock.timestamp()},
                    )
                    await self.audit.record(
                        "payout.broadcast", "payments", payout_id=payout.payout_id,
                        details={"txid": tx.txid, "outcome": result.outcome.value},
                    )  # fmt: skip
            elif result.outcome is Outcome.REFUSED:
                await self.store.move_if(
                    payout.payout_id,
                    {"tx.txid": tx.txid},
                    {"tx.result": result.code, "tx.result_message": result.message},
                )
            return result.outcome
        if now_ms < tx.expiration_ms + self.expiry_margin_s * 1000:
            return None
        # Expired and unknown to the network: it can never be mined.
        if tx.result and tx.result not in RETIRE_CODES:
            await self._fail(payout, [PROCESSING, BROADCAST], f"{tx.result}: {tx.result_message}")
            return None
        await self.store.move_if(
            payout.payout_id,
            {"tx.txid": tx.txid, "status": {"$in": [PROCESSING, BROADCAST]}},
            {"tx": None, "status": PROCESSING, "update_time": self.clock.timestamp()},
        )
        await self.audit.record(
            "payout.tx_expired", "payments", payout_id=payout.payout_id, details={"txid": tx.txid}
        )
        self.wake()
        return None

    async def _mined(self, payout: PayoutRecord, tx: SentTx, receipt: Receipt) -> None:
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
        live = [PROCESSING, BROADCAST]
        if receipt.result != "SUCCESS":
            await self.store.move(payout.payout_id, live, details)
            await self._fail(payout, live, f"{receipt.result}: {receipt.message}".strip(": "))
            return
        solid = await self.network.receipt(tx.txid, solid=True)
        if solid is not None:  # the head read at the start of the pass may predate it
            self.head = max(self.head, await self.network.head_number())
        if solid is None:
            await self.store.move(payout.payout_id, live, {**details, "status": BROADCAST})
            return
        confirmed = await self.store.move(
            payout.payout_id,
            live,
            {**details, "status": CONFIRMED, "confirm_time": self.clock.timestamp()},
        )
        if confirmed is not None:
            await self.audit.record(
                "payout.confirmed", "payments", payout_id=payout.payout_id,
                details={"txid": tx.txid, "block": receipt.block_number},
            )  # fmt: skip

    async def _later(self, payout: PayoutRecord, reason: str) -> None:
        """Nothing was signed in this try, so another is safe: back to pending after a
        backoff, or failed once the retries are used up."""
        if payout.retry_count >= MAX_RETRIES:
            await self._fail(payout, [PROCESSING], reason)
            return
        now, delay = self.clock.timestamp(), RETRY_BACKOFF_S * 2**payout.retry_count
        moved = await self.store.move_if(
            payout.payout_id,
            {"status": PROCESSING, "tx": None, "retry_count": payout.retry_count},
            {
                "status": PENDING,
                "retry_count": payout.retry_count + 1,
                "retry_after": now + delay,
                "error_message": f"{reason}; tried again in {delay:.0f}s",
                "update_time": now,
            },
        )
        if moved is not None:
            await self.audit.record(
                "payout.retry_scheduled", "payments", payout_id=payout.payout_id,
                details={"reason": reason, "retry": moved.retry_count, "delay_s": delay},
            )  # fmt: skip

    async def _fail(self, payout: PayoutRecord, states: list[str], reason: str) -> None:
        moved = await self.store.move(
            payout.payout_id,
            states,
            {"status": FAILED, "error_message": reason, "update_time": self.clock.timestamp()},
        )
        if moved is not None:
            await self.audit.record(
                "payout.failed", "payments", payout_id=payout.payout_id, details={"reason": reason}
            )


FundsCheck = Callable[[int], Awaitable[None]]
