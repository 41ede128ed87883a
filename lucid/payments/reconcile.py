"""Reconciliation: the payout records of a period checked against the TRON network.

Every payout that has a transaction is looked up by txID. A confirmed payout must be
mined, successful and carry a ``Transfer`` of its amount to its recipient; a failed
one must not have paid; a broadcast one is reported while it is not yet solid. The
report is stored (``payments_reconciliations``) and audited.
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
    """Checks payouts against the network."""

    def __init__(
        self,
        store: PayoutStore,
        network: TronNetwork,
        reports: AsyncCollection[dict[str, Any]],
        audit: AuditStore,
        clock: Clock,
    ) -> None:
        self.store = store
        self.network = network
        self.reports = reports
        self.audit = audit
        self.clock = clock

    async def _check(self, payout: PayoutRecord) -> Mismatch | None:
        tx = payout.tx
        if tx is None:
            missing = payout.status == CONFIRMED
            detail = "confirmed without a transaction"
            return Mismatch(payout.payout_id, "", MISSING, detail) if missing else None
        receipt = await self.network.receipt(tx.txid)
        if payout.status == CONFIRMED:
            return self._confirmed(payout, tx.txid, receipt)
        paid = receipt is not None and receipt.result == "SUCCESS"
        if payout.status == FAILED and paid:
            return Mismatch(payout.payout_id, tx.txid, STATUS_MISMATCH, "recorded failed, paid")
        if payout.status in (BROADCAST, PROCESSING):
            detail = "mined, not yet solid" if receipt else "not mined yet"
            return Mismatch(payout.payout_id, tx.txid, UNCONFIRMED, detail)
        return None

    @staticmethod
    def _confirmed(payout: PayoutRecord, txid: str, receipt: Receipt | None) -> Mismatch | None:
        if receipt is None:
            return Mismatch(payout.payout_id, txid, MISSING, "the network does not know it")
        if (payout.recipient, payout.amount_micros) not in receipt.transfers:
            return Mismatch(
                payout.payout_id, txid, MISMATCH,
                f"the chain moved {receipt.transfers}, the record says "
                f"{payout.amount_micros} to {payout.recipient}",
            )  # fmt: skip
        return None

    async def run(self, actor: str, start: float, end: float) -> Report:
        if end <= start:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "the period ends before it starts"
            )
        report = Report(str(uuid.uuid4()), start, end)
        for payout in await self.store.many({"create_time": {"$gte": start, "$lt": end}}):
            try:
                found = await self._check(payout)
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
