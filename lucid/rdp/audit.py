"""Audit of the rdp cluster (spec 04 §5): server create/delete, lifecycle and
configuration changes, session create/terminate, limit breaches."""

from __future__ import annotations

import logging

from lucid.lib.clock import Clock
from lucid.rdp.store.audit import AuditStore

log = logging.getLogger("lucid.audit")


class Auditor:
    """Writes audit events to the store and the audit log."""

    def __init__(self, store: AuditStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def record(self, action: str, actor: str, resource: str, detail: str = "") -> None:
        """One event."""
        log.info("rdp %s by %s on %s %s", action, actor, resource, detail)
        await self.store.append(self.clock.now(), action, actor, resource, detail)
