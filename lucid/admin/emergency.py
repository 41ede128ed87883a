"""Emergency controls: disable/enable new sessions, stop all sessions, lockdown.

They bite: each one is carried out by the clusters that own the sessions (sessions
refuses creates and stops every recording, which then finalizes; rdp terminates its
sessions) and the mode is what ``GetSystemMode`` tells the rest of the mesh, whose
pipelines enforce a lockdown. Each action needs a TOTP step-up of the caller and
writes an emergency log and a critical audit entry, also when it fails. A mode with
an auto-revert time falls back to normal once the clock passes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.stepup import StepUps
from lucid.admin.store.emergency_logs import EmergencyLogRecord, EmergencyLogStore
from lucid.admin.store.state import NORMAL, ModeRecord, StateStore
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.audit import Client
from lucid.runtime.errors import ErrorCode, LucidError

NORMAL_MODE = "normal"
SESSIONS_DISABLED = "new_sessions_disabled"
LOCKDOWN = "lockdown"
DISABLE_REVERT_S = 12 * 3600
LOCKDOWN_REVERT_S = 24 * 3600


class SessionControl(Protocol):
    """The sessions cluster's emergency rpcs."""

    async def set_creation(self, enabled: bool, reason: str, auto_revert_s: int | None) -> None:
        """Turns session creation on or off."""

    async def stop_all(self, reason: str) -> int:
        """Stops every recording; how many."""


class RdpControl(Protocol):
    """The rdp cluster's emergency rpc."""

    async def terminate_all(self, reason: str, user_id: str) -> int | None:
        """Terminates every RDP session; how many (None: rdp is not built yet)."""


@dataclass(frozen=True)
class Outcome:
    """What an emergency action did."""

    mode: ModeRecord
    log: EmergencyLogRecord
    recordings_stopped: int = 0
    rdp_stopped: int = 0


class Emergency:
    """The emergency controls."""

    def __init__(
        self,
        state: StateStore,
        logs: EmergencyLogStore,
        audit: AuditLog,
        *,
        sessions: SessionControl,
        rdp: RdpControl,
        stepups: StepUps,
        clock: Clock,
    ) -> None:
        self.stepups = stepups
        self.state = state
        self.logs = logs
        self.audit = audit
        self.sessions = sessions
        self.rdp = rdp
        self.clock = clock

    async def mode(self) -> ModeRecord:
        """The current mode, after any auto-revert that is due."""
        current = await self.state.mode()
        due = current.auto_revert_at
        if current.mode != NORMAL_MODE and due is not None and self.clock.now() >= due:
            await self.state.set_mode(NORMAL)
            await self.sessions.set_creation(True, "auto-revert", None)
            await self._log("auto_revert", f"{current.mode} ended at {due.isoformat()}", None, {})
            return NORMAL
        return current

    async def disable_new_sessions(self, reason: str, revert_s: int, client: Client) -> Outcome:
        """new sessions refused at the sessions cluster until enabled or reverted."""
        step_up = await self.stepups.require(client)
        current = await self.mode()
        self._not_in_lockdown(current, "disable new sessions")
        seconds = revert_s or DISABLE_REVERT_S
        return await self._act(
            "disable_new_sessions",
            reason,
            client,
            self._disable(reason, seconds, SESSIONS_DISABLED, client),
            step_up=step_up,
        )

    async def enable_new_sessions(self, reason: str, client: Client) -> Outcome:
        """Sessions may be created again."""
        step_up = await self.stepups.require(client)
        self._not_in_lockdown(await self.mode(), "enable new sessions (lift the lockdown)")
        return await self._act(
            "enable_new_sessions", reason, client, self._normal(reason), step_up=step_up
        )

    async def stop_all_sessions(self, reason: str, client: Client) -> Outcome:
        """Every recording stopped (each then finalizes) and every RDP session ended."""
        step_up = await self.stepups.require(client)
        return await self._act(
            "stop_all_sessions", reason, client, self._stop_all(reason, client), step_up=step_up
        )

    async def lockdown(self, reason: str, revert_s: int, client: Client) -> Outcome:
        """Creation off, everything stopped, only admins may call anything."""
        step_up = await self.stepups.require(client)
        current = await self.mode()
        if current.mode == LOCKDOWN:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE, "the system is already in lockdown"
            )
        seconds = revert_s or LOCKDOWN_REVERT_S

        async def run() -> tuple[ModeRecord, dict[str, Any]]:
            mode, details = await self._disable(reason, seconds, LOCKDOWN, client)
            _, stopped = await self._stop_all(reason, client)
            return mode, {**details, **stopped}

        return await self._act("system_lockdown", reason, client, run(), step_up=step_up)

    async def lift_lockdown(self, reason: str, client: Client) -> Outcome:
        """Back to normal."""
        step_up = await self.stepups.require(client)
        if (await self.mode()).mode != LOCKDOWN:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "the system is not in lockdown")
        return await self._act(
            "lift_lockdown", reason, client, self._normal(reason), step_up=step_up
        )

    async def logs_page(
        self, action: str, offset: int, size: int
    ) -> tuple[list[EmergencyLogRecord], int]:
        """A page of emergency logs."""
        return await self.logs.page(action, offset, size)

    # -- steps ----------------------------------------------------------------------

    @staticmethod
    def _not_in_lockdown(current: ModeRecord, what: str) -> None:
        if current.mode == LOCKDOWN:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"cannot {what} while the system is in lockdown",
            )

    async def _disable(
        self, reason: str, seconds: int, mode: str, client: Client
    ) -> tuple[ModeRecord, dict[str, Any]]:
        await self.sessions.set_creation(False, reason, seconds)
        now = self.clock.now()
        record = ModeRecord(mode, reason, now, now + timedelta(seconds=seconds), client.user_id)
        await self.state.set_mode(record)
        return record, {"auto_revert_seconds": seconds}

    async def _normal(self, reason: str) -> tuple[ModeRecord, dict[str, Any]]:
        await self.sessions.set_creation(True, reason, None)
        await self.state.set_mode(NORMAL)
        return NORMAL, {}

    async def _stop_all(self, reason: str, client: Client) -> tuple[ModeRecord, dict[str, Any]]:
        recordings = await self.sessions.stop_all(reason)
        rdp = await self.rdp.terminate_all(reason, client.user_id)
        details: dict[str, Any] = {"recordings_stopped": recordings}
        details["rdp_stopped"] = rdp if rdp is not None else "rdp cluster not available"
        return await self.state.mode(), details

    async def _act(
        self, action: str, reason: str, client: Client, step: Any, *, step_up: str
    ) -> Outcome:
        try:
            mode, details = await step
        except LucidError as exc:
            await self._log(
                action, reason, client, {"error": exc.message}, failed=True, step_up=step_up
            )
            raise
        log = await self._log(action, reason, client, details, step_up=step_up)
        return Outcome(
            mode,
            log,
            recordings_stopped=int(details.get("recordings_stopped", 0)),
            rdp_stopped=details["rdp_stopped"]
            if isinstance(details.get("rdp_stopped"), int)
            else 0,
        )

    async def _log(
        self,
        action: str,
        reason: str,
        client: Client | None,
        details: dict[str, Any],
        *,
        failed: bool = False,
        step_up: str = "",
    ) -> EmergencyLogRecord:
        now: datetime = self.clock.now()
        record = EmergencyLogRecord(
            log_id=new_id(),
            action=action,
            reason=reason,
            user_id=client.user_id if client else "",
            event_time=now,
            status="failed" if failed else "executed",
            details=details,
        )
        await self.logs.add(record)
        await self.audit.record(
            NewEntry.of(
                client,
                action="emergency",
                resource="system",
                resource_id=action,
                details={"reason": reason, **details},
                severity="critical",
                risk_level="critical",
                result="error" if failed else "success",
                step_up_id=step_up,
            )
        )
        return record
