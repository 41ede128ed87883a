"""Audit of the rdp cluster (spec 04 §5): server create/delete, lifecycle and
configuration changes, session create/terminate, limit breaches — in the mesh's one
audit trail (``lucid.runtime.audit``), collection ``rdp_audit_logs``.

Domain code records what happened once it has happened; the caller is the principal
of the rpc being served, or the rdp service itself for background work (the sweeper,
the resource monitor).
"""

from __future__ import annotations

from lucid.runtime.audit import SUCCESS, AuditTrail, Client, Event
from lucid.runtime.context import Principal, current_request_id, principal_var
from lucid.runtime.identity import identity_for

SERVICE = Principal(peer=identity_for("rdp"))


class Auditor:
    """Writes rdp events to the audit trail."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

    async def record(self, action: str, actor: str, resource: str, detail: str = "") -> None:
        """One finished event (a failure to write is logged by the trail, not raised)."""
        principal = principal_var.get() or SERVICE
        client = Client(principal, ip="", user_agent="", request_id=current_request_id())
        details = {"actor": actor, **({"detail": detail} if detail else {})}
        await self.trail.record(Event(action, resource=resource, details=details), client, SUCCESS)
