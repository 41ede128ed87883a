"""Terminating recording sessions from the console, one or up to 100 at a time.

The sessions cluster carries it out (StopRecording on behalf of the administrator,
whose token is forwarded, so it applies its own rules); admin records exactly one
audit entry per request, with the per-session outcome for a bulk request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.clusters import SessionView
from lucid.runtime.audit import Client
from lucid.runtime.errors import LucidError


class SessionStopper(Protocol):
    """The sessions cluster's StopRecording, as the administrator."""

    async def stop(self, session_id: str, token: str) -> SessionView:
        """Stops one session."""


@dataclass(frozen=True)
class Termination:
    """The outcome for one session of a bulk request."""

    session_id: str
    success: bool
    error_code: str = ""
    message: str = ""


class Terminations:
    """TerminateSession and BulkTerminateSessions."""

    def __init__(self, sessions: SessionStopper, audit: AuditLog) -> None:
        self.sessions = sessions
        self.audit = audit

    async def terminate(self, session_id: str, reason: str, client: Client) -> SessionView:
        """Stops one session (it then finalizes); audited either way."""
        entry = _entry(client, session_id, {"reason": reason}, risk="medium")
        try:
            view = await self.sessions.stop(session_id, client.principal.token)
        except LucidError as exc:
            await self.audit.record(_failed(entry, exc))
            raise
        await self.audit.record(entry)
        return view

    async def terminate_many(
        self, session_ids: list[str], reason: str, client: Client
    ) -> list[Termination]:
        """Stops each session; one result per id, one audit entry for the request."""
        results: list[Termination] = []
        for session_id in session_ids:
            try:
                await self.sessions.stop(session_id, client.principal.token)
            except LucidError as exc:
                results.append(Termination(session_id, False, exc.reason, exc.message))
                continue
            results.append(Termination(session_id, True))
        done = sum(r.success for r in results)
        details = {
            "reason": reason,
            "attempted": len(results),
            "successful": done,
            "failed": {r.session_id: r.error_code for r in results if not r.success},
        }
        entry = _entry(client, "", details, risk="high")
        await self.audit.record(entry if done else replace(entry, result="failure"))
        return results


def _entry(client: Client, session_id: str, details: dict[str, object], *, risk: str) -> NewEntry:
    return NewEntry.of(
        client,
        action="terminate",
        resource="session",
        resource_id=session_id,
        details=dict(details),
        severity="warning",
        risk_level=risk,
    )


def _failed(entry: NewEntry, error: LucidError) -> NewEntry:
    return replace(entry, result="failure", details={**entry.details, "error": error.reason})
