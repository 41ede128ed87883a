"""Manual anchoring from the console (AnchorSessions, GetAnchoringOperation).

The sessions cluster carries it out: RetryAnchoring, on behalf of the administrator, for
each named session (it anchors again only a failed or expired anchoring and says why
not otherwise). Admin keeps one operation per request: processing while any accepted
session is being anchored, completed when all of them are, failed when one fails or
none was accepted. Its state is brought up to date from the sessions when read.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.clusters import SessionView
from lucid.admin.store.anchoring_ops import AnchoringOpRecord, AnchoringOpStore
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.audit import Client
from lucid.runtime.errors import ErrorCode, LucidError

PROCESSING, COMPLETED, FAILED = "processing", "completed", "failed"


class SessionAnchors(Protocol):
    """The sessions cluster's RetryAnchoring and GetSession, as the administrator."""

    async def retry_anchoring(self, session_id: str, reason: str, token: str) -> SessionView:
        """Anchors a session again."""

    async def get(self, session_id: str, token: str) -> SessionView:
        """A session."""


class Anchorings:
    """AnchorSessions and its operations."""

    def __init__(
        self, sessions: SessionAnchors, store: AnchoringOpStore, audit: AuditLog, clock: Clock
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.audit = audit
        self.clock = clock

    async def anchor(
        self, session_ids: list[str], priority: str, reason: str, client: Client
    ) -> AnchoringOpRecord:
        """Asks the sessions cluster to anchor each session again; one audited operation."""
        refused: dict[str, str] = {}
        for session_id in session_ids:
            try:
                await self.sessions.retry_anchoring(session_id, reason, client.principal.token)
            except LucidError as exc:
                refused[session_id] = f"session {session_id}: {exc.reason} {exc.message}"
        now = self.clock.now()
        op = AnchoringOpRecord(
            operation_id=new_id(),
            session_ids=session_ids,
            priority=priority or "normal",
            state=PROCESSING,
            requested_by=client.user_id,
            reason=reason,
            created_at=now,
            refused=refused,
        )
        if len(refused) == len(session_ids):
            op = replace(
                op, state=FAILED, finished_at=now, error_message="; ".join(refused.values())
            )
        await self.store.put(op)
        await self.audit.record(
            NewEntry.of(
                client,
                action="create",
                resource="blockchain",
                resource_id=op.operation_id,
                details={"sessions": session_ids, "refused": refused, "reason": reason},
                result="failure" if op.state == FAILED else "success",
                severity="warning",
                risk_level="medium",
            )
        )
        return op

    async def operation(self, operation_id: str, token: str) -> AnchoringOpRecord:
        """An operation, its state brought up to date from the sessions."""
        op = await self.store.get(operation_id)
        if op is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_FOUND, f"anchoring operation {operation_id} not found"
            )
        if op.state != PROCESSING:
            return op
        accepted = [s for s in op.session_ids if s not in op.refused]
        views = [await self.sessions.get(s, token) for s in accepted]
        failed = [v for v in views if v.state == FAILED]
        if failed:
            done = replace(
                op,
                state=FAILED,
                finished_at=self.clock.now(),
                error_message=", ".join(f"session {v.session_id} failed" for v in failed),
            )
        elif all(v.state == COMPLETED and v.anchor_block_height for v in views):
            last = max(views, key=lambda v: v.anchor_block_height)
            done = replace(
                op,
                state=COMPLETED,
                finished_at=self.clock.now(),
                tx_hash=last.anchor_tx_hash,
                block_height=last.anchor_block_height,
                error_message="; ".join(op.refused.values()),
            )
        else:
            return op
        await self.store.put(done)
        return done
