"""The alerts of spec 05 §5, written to the audit trail (``alert.<kind>``) and the log.

- ``auth_failures``: 5 refused registration signatures from one caller in 15 min;
- ``payout_outlier``: a payout over 10x the node's average payout;
- ``payout_frequency``: 3 or more payouts to one node within an hour;
- ``resources``: a heartbeat sample over the node's CPU or memory threshold (95 %).

The in-memory sink of spec 05 §8 is the audit collection: operators and the admin
console read alerts from there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from lucid.nodes.callers import Caller, audit
from lucid.runtime.audit import AuditTrail

log = logging.getLogger("lucid.nodes.alerts")

OUTLIER_FACTOR = 10
FREQUENT_PAYOUTS = 3
AUTH_FAILURES = 5


class Alerts:
    """Raises alerts."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

    async def raise_alert(
        self, kind: str, resource: str, caller: Caller, details: Mapping[str, object]
    ) -> None:
        """Records and logs one alert."""
        log.warning("alert %s on %s: %s", kind, resource, dict(details))
        await audit(self.trail, caller, f"alert.{kind}", resource, details=details)
