"""The xrdp daemon (spec 04 §1 xrdp-integration): its stored settings and the
shared session manager's start, stop, restart and status.

Settings apply at the next (re)start: the security and performance ones to each
instance's ``xrdp.ini`` when its server starts, the session limits to the session
manager's ``sesman.ini`` (``MaxSessions``, ``IdleTimeLimit``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass, replace
from typing import Any

from lucid.lib.clock import Clock
from lucid.rdp.actor import Actor
from lucid.rdp.audit import Auditor
from lucid.rdp.backend import RdpBackend
from lucid.rdp.records import XrdpSettings
from lucid.rdp.sesman import SessionManager
from lucid.rdp.store.servers import ServerStore
from lucid.rdp.store.settings import SettingsStore
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError


@dataclass(frozen=True)
class DaemonStatus:
    """What XrdpStatus reports."""

    running: bool
    uptime_s: float
    connections: int
    version: str
    pid: int
    port: int


class XrdpDaemon:
    """Settings and service control of the shared daemon."""

    def __init__(
        self,
        settings: SettingsStore,
        sesman: SessionManager,
        servers: ServerStore,
        backend: RdpBackend,
        *,
        clock: Clock,
        auditor: Auditor,
    ) -> None:
        self.settings = settings
        self.sesman = sesman
        self.servers = servers
        self.backend = backend
        self.clock = clock
        self.auditor = auditor
        self._version = ""

    async def config(self) -> XrdpSettings:
        """The stored settings (defaults until changed)."""
        return await self.settings.xrdp()

    async def update(self, actor: Actor, changes: dict[str, Any]) -> tuple[XrdpSettings, bool]:
        """Stores changed settings; whether a restart is needed to apply them."""
        current = await self.config()
        updated = replace(current, **changes, updated_at=self.clock.now(), updated_by=actor.user_id)
        if updated.idle_timeout_s >= updated.session_timeout_s:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                "the idle timeout must be below the session timeout",
                field_violations=[
                    FieldViolation("global.idle_timeout_seconds", "must be < session timeout")
                ],
            )
        await self.settings.put_xrdp(updated)
        self.sesman.limits = (updated.max_connections, updated.idle_timeout_s)
        await self.auditor.record("xrdp_config", actor.name, "xrdp", ",".join(sorted(changes)))
        return updated, await self.sesman.running()

    async def start(self, actor: Actor) -> DaemonStatus:
        """Starts the session manager (already running is fine)."""
        settings = await self.config()
        self.sesman.limits = (settings.max_connections, settings.idle_timeout_s)
        await self.sesman.start()
        await self.auditor.record("xrdp_start", actor.name, "xrdp")
        return await self.status()

    async def stop(self, actor: Actor) -> DaemonStatus:
        """Stops the session manager this cluster started (already stopped is fine)."""
        await self.sesman.stop()
        await self.auditor.record("xrdp_stop", actor.name, "xrdp")
        return await self.status()

    async def restart(self, actor: Actor) -> DaemonStatus:
        """Stops and starts it, applying the stored settings."""
        await self.stop(actor)
        return await self.start(actor)

    async def version(self) -> str:
        """xrdp's version string."""
        if not self._version:
            binary = shutil.which("xrdp") or "xrdp"
            process = await asyncio.create_subprocess_exec(
                binary,
                "--version",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await process.communicate()
            match = re.search(r"xrdp\s+([0-9][\w.~+-]*)", out.decode(errors="replace"))
            self._version = match.group(1) if match else "unknown"
        return self._version

    async def status(self) -> DaemonStatus:
        """State, uptime, connected clients of every running server, version."""
        connections = 0
        for server in await self.servers.find(states=("running",)):
            connections += self.backend.client_count(server.pid)
        return DaemonStatus(
            running=await self.sesman.running(),
            uptime_s=self.sesman.uptime_s(),
            connections=connections,
            version=await self.version(),
            pid=self.sesman.pid,
            port=self.sesman.port,
        )
