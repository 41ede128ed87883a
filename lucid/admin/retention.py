"""The audit log's retention: once an hour, entries older than the configured
``audit_log_retention_days`` are purged (the chain's checkpoint moves first)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from lucid.admin.auditlog import AuditLog
from lucid.admin.configs import Configs
from lucid.runtime.errors import LucidError

log = logging.getLogger("lucid.admin.retention")
INTERVAL_S = 3600.0


async def purge_once(audit: AuditLog, configs: Configs) -> int:
    """Purges what the configuration's retention lets go; how many entries."""
    days = int((await configs.current()).values["audit_log_retention_days"])
    return await audit.purge(timedelta(days=days))


async def run(audit: AuditLog, configs: Configs, interval_s: float = INTERVAL_S) -> None:
    """Purges forever, every ``interval_s``; a failed round is logged and retried."""
    while True:
        try:
            purged = await purge_once(audit, configs)
            if purged:
                log.info("audit retention", extra={"purged": purged})
        except LucidError as exc:
            log.warning("audit retention failed: %s", exc.message)
        await asyncio.sleep(interval_s)
