"""Audit events of the other clusters, entered in admin's tamper-evident chain.

The clusters publish what the console must be able to audit on the mesh (sessions
``session.state-changed``, nodes ``node.registered``, payments ``payout.created``, auth
``user.created`` / ``user.role-changed`` / ``user.status-changed``); admin consumes them
(group ``admin-audit``) and appends one entry per event, in the console's actions and
resources (a termination of a session, the creation of a node, payout or user, the
update of a user), the details being the event's data with its type, source and id.
Of the sessions' changes only terminations (stop, delete) are entered; events published
before the audit log's oldest entry (or, for an empty log, before admin started) are
skipped, so a new deployment on a shared Redis does not take in another's history. An
event delivered again after a crash is entered again: the entry names the event id, so a
reader sees the repeat."""

from __future__ import annotations

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.mesh_events import MeshEvent, MeshEvents
from lucid.lib.clock import Clock

GROUP = "admin-audit"
PATTERNS = ("session.*", "node.*", "payout.*", "user.*")
TERMINATIONS = frozenset({"stop", "delete"})
ENTRIES = {
    "session.state-changed": ("terminate", "session", "session_id"),
    "node.registered": ("create", "node", "node_id"),
    "payout.created": ("create", "payout", "payout_id"),
    "user.created": ("create", "user", "user_id"),
    "user.role-changed": ("update", "user", "user_id"),
    "user.status-changed": ("update", "user", "user_id"),
}
"""Event type → (console action, console resource, the data field naming the resource)."""
HIGH_RISK = frozenset({"user.role-changed", "user.status-changed", "payout.created"})


def entry_of(event: MeshEvent) -> NewEntry | None:
    """The audit entry of an event (None: not audited)."""
    data = event.data
    known = ENTRIES.get(event.event_type)
    if known is None:
        return None
    if event.event_type == "session.state-changed" and data.get("action") not in TERMINATIONS:
        return None
    action, resource, id_field = known
    return NewEntry(
        action=action,
        resource=resource,
        resource_id=str(data.get(id_field, "")),
        user_id=str(data.get("by_user_id", "")),
        details={
            **data,
            "event_type": event.event_type,
            "event_source": event.source,
            "event_id": event.event_id,
        },
        severity="warning" if event.event_type in HIGH_RISK else "info",
        risk_level="high" if event.event_type in HIGH_RISK else "low",
        request_id=event.event_id,
    )


class AuditIntake:
    """Consumes the other clusters' events into the audit chain."""

    def __init__(
        self, events: MeshEvents, audit: AuditLog, clock: Clock, group: str = GROUP
    ) -> None:
        self.events = events
        self.audit = audit
        self.clock = clock
        self.group = group
        self.since_s = 0.0
        """Events published before the audit log began are not entered."""

    async def enter(self, event: MeshEvent) -> None:
        """Appends an event's entry (if audited)."""
        if event.time_s < self.since_s:
            return
        entry = entry_of(event)
        if entry is not None:
            await self.audit.record(entry)

    async def run(self) -> None:
        """Forever (a background task of the admin server)."""
        began = await self.audit.store.oldest_time()
        self.since_s = (began or self.clock.now()).timestamp()
        await self.events.consume(self.group, "admin-audit-intake", PATTERNS, self.enter)
