"""Payouts from the console: listing, status and triggering, carried out by the payments
cluster. A trigger pays each named user at their TRON address (from auth) with one
idempotent payout per user (key ``admin:<request_id>:<user_id>``, so a repeated request
never pays twice); it is audited in admin's chain, failed or not."""

from __future__ import annotations

from dataclasses import replace

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.payments_link import PaymentsAsAdmin, PayoutQuery, PayoutView
from lucid.runtime.audit import Client
from lucid.runtime.errors import LucidError


class PayoutOps:
    """AdminPayoutService's rules."""

    def __init__(self, payments: PaymentsAsAdmin, audit: AuditLog) -> None:
        self.payments = payments
        self.audit = audit

    async def page(
        self, query: PayoutQuery, user_id: str, page_size: int, page_token: str
    ) -> tuple[list[PayoutView], str, int]:
        """Payouts, newest first; ``user_id`` narrows to payouts to that user's address."""
        if user_id:
            query = replace(query, recipient_address=await self.payments.address_of(user_id))
        return await self.payments.page(query, page_size, page_token)

    async def status(self, payout_id: str) -> PayoutView:
        """One payout."""
        return await self.payments.get(payout_id)

    async def trigger(
        self, request_id: str, user_ids: list[str], amount_micros: int, reason: str, client: Client
    ) -> list[PayoutView]:
        """One payout per user; all addresses are looked up before anything is paid."""
        entry = NewEntry.of(
            client,
            action="create",
            resource="payout",
            resource_id=request_id,
            details={"users": user_ids, "amount_micros": amount_micros, "reason": reason},
            severity="warning",
            risk_level="high",
        )
        made: list[PayoutView] = []
        try:
            addresses = [await self.payments.address_of(u) for u in user_ids]
            for user_id, address in zip(user_ids, addresses, strict=True):
                key = f"admin:{request_id}:{user_id}"
                made.append(
                    await self.payments.create(
                        key,
                        user_id=user_id,
                        address=address,
                        amount_micros=amount_micros,
                        reason=reason,
                        by=client.user_id,
                    )
                )
        except LucidError as exc:
            done = [p.payout_id for p in made]
            details = {**entry.details, "error": exc.reason, "payouts": done}
            await self.audit.record(replace(entry, result="failure", details=details))
            raise
        details = {**entry.details, "payouts": [p.payout_id for p in made]}
        await self.audit.record(replace(entry, details=details))
        return made
