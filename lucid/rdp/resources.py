"""Resource monitoring (spec 04 §4.4): samples every ``resource_interval_s`` of the
host and of each running server, limits, alerts with severities, and soft
enforcement (an alert first; a server still over its limit at the next sample has
its RDP sessions terminated).

Each open RDP session is checked against the per-session limits (CPU, memory,
bandwidth) with its server's sample: a server has one desktop account, so what
the server uses is what its sessions use. A session still over a limit at the
next sample is terminated on its own (its alert names it; the server's other
limits are untouched).

Severity of a value over its threshold: over by less than 10 → medium, by 10 to 19
→ high, by 20 or more, or a value of 98 or more → critical.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.rdp.actor import Actor
from lucid.rdp.audit import Auditor
from lucid.rdp.records import Alert, Limits, Sample, ServerRecord
from lucid.rdp.sampling import Sampler
from lucid.rdp.store.resources import ResourceStore
from lucid.rdp.store.servers import ServerStore
from lucid.rdp.store.settings import SettingsStore
from lucid.runtime.errors import LucidError, not_found

log = logging.getLogger("lucid.rdp.resources")

CRITICAL_VALUE = 98.0


def severity(value: float, threshold: float) -> str:
    """The severity of ``value`` against ``threshold`` ("" when not over it)."""
    over = value - threshold
    if over <= 0:
        return ""
    if over >= 20 or value >= CRITICAL_VALUE:
        return "critical"
    if over >= 10:
        return "high"
    return "medium"


def during(samples: Sequence[Sample], start: datetime, end: datetime | None) -> list[Sample]:
    """The samples taken while a session lived."""
    return [s for s in samples if s.time >= start and (end is None or s.time <= end)]


@dataclass(frozen=True)
class SessionControl:
    """What enforcement needs of the RDP sessions."""

    open_on_server: Callable[[str], Awaitable[list[str]]]
    """The ids of a server's open sessions."""
    end_on_server: Callable[[str, str], Awaitable[int]]
    """Terminates the sessions of a server for a reason; how many."""
    end: Callable[[str, str], Awaitable[None]]
    """Terminates one session for a reason."""


class Resources:
    """Samples, limits, alerts."""

    def __init__(
        self,
        store: ResourceStore,
        settings: SettingsStore,
        servers: ServerStore,
        *,
        default_limits: Limits,
        clock: Clock,
        auditor: Auditor,
        interval_s: float,
        sampler: Sampler,
    ) -> None:
        self.store = store
        self.settings = settings
        self.servers = servers
        self.default_limits = default_limits
        self.clock = clock
        self.auditor = auditor
        self.interval_s = interval_s
        self.sampler = sampler
        self.sessions: SessionControl | None = None

    async def limits(self) -> Limits:
        """The limits in force."""
        return await self.settings.limits(self.default_limits)

    async def update_limits(self, actor: Actor, changes: dict[str, float]) -> Limits:
        """Replaces the given limits; the alert thresholds stay percentages."""
        current = await self.limits()
        updated = replace(current, **changes, updated_at=self.clock.now())  # type: ignore[arg-type]
        await self.settings.put_limits(updated)
        await self.auditor.record("limits_update", actor.name, "limits", ",".join(sorted(changes)))
        return updated

    async def sample_once(self) -> list[Alert]:
        """One round: the host and every running server; alerts and enforcement."""
        now = self.clock.now()
        limits = await self.limits()
        host = await asyncio.to_thread(self.sampler.host, now)
        await self.store.add_sample(host)
        raised = await self.evaluate(host, limits)
        running = await self.servers.find(states=("running",))
        self.sampler.keep_servers({s.server_id for s in running})
        for server in running:
            sample = await asyncio.to_thread(
                self.sampler.server,
                server.server_id,
                server.pid,
                server.account.username,
                server.port,
                now,
            )
            await self.store.add_sample(sample)
            raised += await self.evaluate(sample, limits, server)
            if self.sessions is not None:
                for session_id in await self.sessions.open_on_server(server.server_id):
                    share = replace(sample, scope="session", subject_id=session_id)
                    raised += await self.evaluate(share, limits, server)
        await asyncio.to_thread(self.sampler.forget_dead)
        return raised

    def _checks(self, sample: Sample, limits: Limits) -> list[tuple[str, float, float]]:
        """(resource type, value, threshold) of a sample."""
        if sample.scope == "host":
            mbps = (sample.net_in_kbps + sample.net_out_kbps) * 8 / 1000
            return [
                ("cpu", sample.cpu_percent, limits.cpu_threshold),
                ("memory", sample.memory_percent, limits.memory_threshold),
                ("disk", sample.disk_percent, limits.disk_threshold),
                ("network", mbps, limits.network_threshold_mbps),
            ]
        mbps = (sample.net_in_kbps + sample.net_out_kbps) * 8 / 1000
        if sample.scope == "session":  # memory and bandwidth as percent of the limit
            return [
                ("cpu", sample.cpu_percent, limits.session_cpu_percent),
                ("memory", 100.0 * sample.memory_mb / limits.session_memory_mb, 100.0),
                ("network", 100.0 * mbps / limits.session_bandwidth_mbps, 100.0),
            ]
        # memory, disk and bandwidth as percent of the server's limit
        return [
            ("cpu", sample.cpu_percent, limits.server_cpu_percent),
            ("memory", 100.0 * sample.memory_mb / limits.server_memory_mb, 100.0),
            ("disk", 100.0 * sample.disk_mb / limits.server_disk_mb, 100.0),
            ("network", 100.0 * mbps / limits.server_bandwidth_mbps, 100.0),
        ]

    async def evaluate(
        self, sample: Sample, limits: Limits, server: ServerRecord | None = None
    ) -> list[Alert]:
        """Raises an alert for each resource over its threshold; enforces a server's or
        a session's limit when it was already alerted and is still over. A session
        sample needs its ``server``."""
        raised = []
        session_id = sample.subject_id if sample.scope == "session" else ""
        server_id = server.server_id if server is not None else ""
        if sample.scope == "server":
            server_id = sample.subject_id
        subject = f"session {session_id}" if session_id else f"server {server_id}"
        for kind, value, threshold in self._checks(sample, limits):
            level = severity(value, threshold)
            if not level:
                continue
            open_alert = await self.store.open_alert(server_id, kind, session_id)
            if open_alert is not None:
                if server is not None and not open_alert.enforced:
                    await self._enforce(open_alert, server_id, session_id)
                    if session_id:
                        break  # the session has ended: its other limits are moot
                continue
            alert = Alert(
                alert_id=new_id(),
                server_id=server_id,
                session_id=session_id,
                severity=level,
                resource_type=kind,
                threshold=threshold,
                current_value=value,
                message=f"{kind} at {value:.1f} over {threshold:.1f}"
                + (f" on {subject}" if server_id else " on the host"),
                created_at=sample.time,
            )
            await self.store.add_alert(alert)
            await self.auditor.record(
                "limit_exceeded", "service:rdp", session_id or server_id or "host", kind
            )
            raised.append(alert)
        return raised

    async def _enforce(self, alert: Alert, server_id: str, session_id: str) -> None:
        """The soft limit: terminates the session, or every session of the server."""
        if self.sessions is None:
            return
        if session_id:
            try:
                await self.sessions.end(session_id, "limit")
            except LucidError as exc:  # it ended in the meantime
                log.info("session %s over its limit not terminated: %s", session_id, exc)
                return
            done = f"{alert.resource_type}: 1"
        else:
            count = await self.sessions.end_on_server(server_id, "limit")
            done = f"{alert.resource_type}: {count}"
        await self.store.mark_enforced(alert.alert_id)
        await self.auditor.record("limit_enforced", "service:rdp", session_id or server_id, done)

    async def alerts(
        self,
        actor: Actor,
        *,
        severity: str,
        resolved: bool | None,
        server_id: str,
        resource_type: str,
        offset: int,
        limit: int,
    ) -> tuple[list[Alert], int]:
        """Alerts the actor may see (users: those of their servers), newest first."""
        server_ids: list[str] | None = None
        if not actor.sees_all:
            server_ids = [s.server_id for s in await self.servers.find(user_id=actor.user_id)]
            if server_id and server_id not in server_ids:
                actor.check_owner("", f"server {server_id}")
        if server_id:
            server_ids = [server_id]
        return await self.store.find_alerts(
            server_ids=server_ids,
            severity=severity,
            resolved=resolved,
            resource_type=resource_type,
            offset=offset,
            limit=limit,
        )

    async def resolve(self, actor: Actor, alert_id: str, note: str) -> Alert:
        """Marks an alert resolved."""
        alert = await self.store.alert(alert_id)
        if alert is None:
            raise not_found(f"alert {alert_id}")
        if alert.resolved:
            return alert
        resolved = await self.store.resolve(alert_id, self.clock.now(), actor.user_id)
        await self.auditor.record("alert_resolve", actor.name, alert_id, note)
        assert resolved is not None
        return resolved

    async def usage(self, scope: str, subject_id: str, since: datetime) -> list[Sample]:
        """Samples of a subject since a time, oldest first."""
        return await self.store.samples(scope, subject_id, since)

    def since(self, seconds: float) -> datetime:
        """The start of a time range ending now."""
        return self.clock.now() - timedelta(seconds=seconds)

    async def monitor(self) -> None:
        """Samples every ``interval_s``, the first time one interval after the start (CPU
        rates need a first reading to count from) — a background task."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sample_once()
            except Exception:  # a failed round must not end the monitor
                log.exception("resource sampling failed")
