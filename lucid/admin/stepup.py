"""TOTP step-up: an administrator proves a current TOTP code (checked by auth, which
owns the secret and counts failures) and may then use the emergency controls for
five minutes. Every step-up, right or wrong, is audited."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.store.stepups import StepUpStore
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.audit import Client
from lucid.runtime.errors import ErrorCode, LucidError

STEP_UP_TTL_S = 300


class TotpChecker(Protocol):
    """Auth's CheckTotp, as the signed-in administrator."""

    async def check(self, code: str, token: str) -> None:
        """Raises ``LucidError`` unless the code is right."""


@dataclass(frozen=True)
class StepUp:
    """A granted step-up."""

    step_up_id: str
    expires_at: datetime


class StepUps:
    """Granting and requiring step-ups."""

    def __init__(
        self, checker: TotpChecker, store: StepUpStore, audit: AuditLog, clock: Clock
    ) -> None:
        self.checker = checker
        self.store = store
        self.audit = audit
        self.clock = clock

    async def step_up(self, code: str, client: Client) -> StepUp:
        """Checks the code with auth; a step-up valid for five minutes."""
        entry = NewEntry.of(
            client,
            action="step_up",
            resource="user",
            resource_id=client.user_id,
            risk_level="medium",
        )
        try:
            await self.checker.check(code, client.principal.token)
        except LucidError as exc:
            await self.audit.record(
                replace(entry, result="failure", severity="warning", details={"error": exc.reason})
            )
            raise
        granted = StepUp(new_id(), self.clock.now() + timedelta(seconds=STEP_UP_TTL_S))
        await self.store.put(client.user_id, granted.step_up_id, STEP_UP_TTL_S)
        await self.audit.record(replace(entry, step_up_id=granted.step_up_id))
        return granted

    async def require(self, client: Client) -> str:
        """The caller's live step-up id, or PERMISSION_DENIED."""
        found = await self.store.get(client.user_id) if client.user_id else None
        if found is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_STEP_UP_REQUIRED,
                "this action needs a TOTP step-up (AdminAuthService.StepUp) in the last 5 minutes",
                metadata={"step_up": "required"},
            )
        return found
