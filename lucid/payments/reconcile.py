"""Reconciliation: the payouts, payments, refunds and wallet transactions of a period
checked against the TRON network.

Every record that has a transaction is looked up by txID. A confirmed one must be
mined, successful and have moved its amount to its recipient (a USDT ``Transfer`` event,
or the TRX transfer itself); a failed one must not have paid; a broadcast one is
reported while it is not yet solid. The report is stored (``payments_reconciliations``)
and audited.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from lucid.lib.clock import Clock
from lucid.payments.network import NetworkError, Receipt, TronNetwork
from lucid.payments.store.audit import AuditStore
from lucid.payments.store.base import StoreUnavailableError
from lucid.payments.store.payouts import (
    BROADCAST,
    CONFIRMED,
    FAILED,
    PROCESSING,
    PayoutRecord,
    PayoutStore,
)
from lucid.payments.store.transfers import LIVE, REFUND_STATES, TransferRecord, TransferStore
from lucid.runtime.errors import ErrorCode, LucidError

MISSING = "missing_on_chain"
MISMATCH = "mismatch"
UNCONFIRMED = "unconfirmed"
STATUS_MISMATCH = "status_mismatch"


@dataclass
class Mismatch:
    """One difference between a record and the chain."""

    record_id: str
    tx_hash: str
    issue: str
    detail: str
    record_type: str = "payout"


@dataclass(frozen=True)
class Entry:
    """A record as reconciliation sees it."""

    record_type: str
    record_id: str
    state: str
    """``confirmed``, ``failed``, ``live`` (sent, not yet confirmed) or ``pending``."""
    tx: Any
    recipient: str
    amount_micros: int
    trx: bool = False

    @classmethod
    def of_payout(cls, p: PayoutRecord) -> Entry:
        live = p.status in (BROADCAST, PROCESSING)
        state = "live" if live else p.status if p.status in (CONFIRMED, FAILED) else "pending"
        return cls("payout", p.payout_id, state, p.tx, p.recipient, p.amount_micros)

    @classmethod
    def of_transfer(cls, t: TransferRecord) -> Entry:
        state = "confirmed" if t.status in REFUND_STATES else t.status
        if t.status in LIVE:
            state = "live" if t.tx is not None else "pending"
        return cls(
            t.kind, t.transfer_id, state, t.tx, t.recipient, t.amount_micros, trx=t.currency == 2
        )


@dataclass
class Report:
    """What a reconciliation found."""

    reconciliation_id: str
    start: float
    end: float
    checked: int = 0
    matched: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    complete_time: float = 0.0


class Reconciler:
    """Checks payouts and transfers against the network."""

    def __init__(
        self,
        store: PayoutStore,
        network: TronNetwork,
        reports: AsyncCollection[dict[str, Any]],
        audit: AuditStore,
        clock: Clock,
        *,
        transfers: TransferStore | None = None,
    ) -> None:
        self.store = store
        self.transfers = transfers
        self.network = network
        self.reports = reports
        self.audit = audit
        self.clock = clock

    async def _check(self, entry: Entry) -> Mismatch | None:
        def found(tx_hash: str, issue: str, detail: str) -> Mismatch:
            return Mismatch(entry.record_id, tx_hash, issue, detail, entry.record_type)

        tx = entry.tx
        if tx is None:
            missing = entry.state == CONFIRMED
            return found("", MISSING, "confirmed without a transaction") if missing else None
        receipt = await self.network.receipt(tx.txid)
        if entry.state == CONFIRMED:
            return await self._confirmed(entry, tx.txid, receipt)
        paid = receipt is not None and receipt.result == "SUCCESS"
        if entry.state == FAILED and paid:
            return found(tx.txid, STATUS_MISMATCH, "recorded failed, paid")
        if entry.state == "live":
            return found(
                tx.txid, UNCONFIRMED, "mined, not yet solid" if receipt else "not mined yet"
            )
        return None

    async def _confirmed(self, entry: Entry, txid: str, receipt: Receipt | None) -> Mismatch | None:
        if receipt is None:
            return Mismatch(
                entry.record_id, txid, MISSING, "the network does not know it", entry.record_type
            )
        moved = list(receipt.transfers)
        if entry.trx:
            transfer = await self.network.trx_transfer(txid)
            moved = [transfer] if transfer is not None else []
        if (entry.recipient, entry.amount_micros) in moved:
            return None
        return Mismatch(
            entry.record_id, txid, MISMATCH,
            f"the chain moved {moved}, the record says {entry.amount_micros} to {entry.recipient}",
            entry.record_type,
        )  # fmt: skip

    async def run(self, actor: str, start: float, end: float) -> Report:
        if end <= start:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "the period ends before it starts"
            )
        report = Report(str(uuid.uuid4()), start, end)
        period = {"create_time": {"$gte": start, "$lt": end}}
        entries = [Entry.of_payout(p) for p in await self.store.many(period)]
        if self.transfers is not None:
            entries += [Entry.of_transfer(t) for t in await self.transfers.many(period)]
        for entry in entries:
            try:
                found = await self._check(entry)
            except NetworkError as exc:
                raise exc.as_lucid() from exc
            report.checked += 1
            if found is None:
                report.matched += 1
            else:
                report.mismatches.append(found)
        report.complete_time = self.clock.timestamp()
        try:
            await self.reports.insert_one({"_id": report.reconciliation_id, **asdict(report)})
        except PyMongoError as exc:
            raise StoreUnavailableError(exc) from None
        await self.audit.record(
            "payments.reconciled",
            actor,
            details={
                "reconciliation_id": report.reconciliation_id,
                "checked": report.checked,
                "mismatches": len(report.mismatches),
            },
        )
        return report
