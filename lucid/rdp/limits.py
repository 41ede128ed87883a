"""Call rate limits of the rdp cluster (spec 04 §5): per user and service, per
minute — servers 100, xrdp 50, RDP sessions 200, resources 300; a call over the
limit is refused with RESOURCE_EXHAUSTED ``LUCID_ERR_3001`` and a retry time.

Checked in the call pipeline (``ClusterApp.policy``) before authorization, with
the one GCRA definition of ``lucid.lib.ratelimit``. Counts live in this process:
one rdp instance per host owns its desktops, so its users' calls come here.
Calls of services acting on their own are not limited.
"""

from __future__ import annotations

from lucid.lib.clock import Clock
from lucid.lib.ratelimit import MemoryLimiter, Policy
from lucid.runtime.context import Principal
from lucid.runtime.contracts import MethodInfo
from lucid.runtime.errors import ErrorCode, LucidError

WINDOW_S = 60.0
PER_MINUTE = {
    "lucid.rdp.v1.RdpServerService": 100,
    "lucid.rdp.v1.XrdpService": 50,
    "lucid.rdp.v1.RdpSessionService": 200,
    "lucid.rdp.v1.ResourceService": 300,
}
DEFAULT_PER_MINUTE = 100


class CallLimits:
    """The pipeline check."""

    def __init__(self, clock: Clock, per_minute: dict[str, int] | None = None) -> None:
        self.clock = clock
        self.policies = {
            service: Policy(limit=limit, window_s=WINDOW_S)
            for service, limit in (per_minute or PER_MINUTE).items()
        }
        self.default = Policy(limit=DEFAULT_PER_MINUTE, window_s=WINDOW_S)
        self.limiter = MemoryLimiter()

    def __call__(self, principal: Principal, info: MethodInfo) -> None:
        """Counts the call; refuses it over the limit."""
        if principal.user is None:
            return
        policy = self.policies.get(info.service, self.default)
        decision = self.limiter.check(
            f"{principal.user.user_id}:{info.service}", policy, self.clock.timestamp(), 1
        )
        if not decision.allowed:
            raise LucidError(
                ErrorCode.ERROR_CODE_RATE_LIMITED,
                f"at most {policy.limit} calls a minute to {info.service.rsplit('.', 1)[1]}",
                retry_after_s=decision.retry_after_s,
            )
