"""The life of RDP servers (spec 04 §3, §4.1, §4.2): create with a port and a
desktop account, start, stop, restart, delete, maintenance, and the monitor that
moves a server whose process died to ``error``.

States: create → stopped; start: stopped/error → starting → running (a failed
spawn → error); stop → stopping → stopped; delete stops first and releases the
port; maintenance is set by an administrator.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.lib.sealing import Sealer
from lucid.rdp import accounts
from lucid.rdp.actor import Actor
from lucid.rdp.audit import Auditor
from lucid.rdp.backend import InstanceSpec, RdpBackend, StartError
from lucid.rdp.config import RdpConfig
from lucid.rdp.procs import port_bindable, port_open
from lucid.rdp.records import (
    Account,
    DesktopConfig,
    Limits,
    Resources,
    ServerRecord,
    XrdpSettings,
)
from lucid.rdp.store.servers import ServerStore
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError, not_found

log = logging.getLogger("lucid.rdp.servers")

STOPPED, STARTING, RUNNING, STOPPING = "stopped", "starting", "running", "stopping"
ERROR, MAINTENANCE = "error", "maintenance"
STARTABLE = (STOPPED, ERROR)
MEMORY_STEP_MB = 256


class ServerSessions(Protocol):
    """What the server lifecycle asks of the RDP sessions on a server."""

    async def open_count(self, server_id: str) -> int:
        """Sessions not terminated on the server."""
        ...

    async def terminate_on_server(self, server_id: str, reason: str, actor: Actor) -> int:
        """Terminates them; how many."""
        ...


def check_resources(resources: Resources) -> None:
    """Memory and disk are multiples of 256 MB (the proto checks the ranges)."""
    bad = [
        FieldViolation(f"resources.{name}", f"must be a multiple of {MEMORY_STEP_MB}")
        for name, value in (("memory_mb", resources.memory_mb), ("disk_mb", resources.disk_mb))
        if value % MEMORY_STEP_MB
    ]
    if bad:
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            "memory and disk must be multiples of 256 MB",
            field_violations=bad,
        )


class Servers:
    """Server rules; the processes are the backend's."""

    def __init__(
        self,
        store: ServerStore,
        backend: RdpBackend,
        *,
        sealer: Sealer,
        config: RdpConfig,
        clock: Clock,
        auditor: Auditor,
        limits: Callable[[], Awaitable[Limits]],
        xrdp_settings: Callable[[], Awaitable[XrdpSettings]],
    ) -> None:
        self.limits = limits
        self.xrdp_settings = xrdp_settings
        self.store = store
        self.backend = backend
        self.sealer = sealer
        self.config = config
        self.clock = clock
        self.auditor = auditor
        self.sessions: ServerSessions | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._allocation = asyncio.Lock()

    def _lock(self, server_id: str) -> asyncio.Lock:
        return self._locks.setdefault(server_id, asyncio.Lock())

    def spec(self, server: ServerRecord, xrdp: XrdpSettings | None = None) -> InstanceSpec:
        """What the backend needs of a server (its password unsealed)."""
        xrdp = xrdp or XrdpSettings()
        return InstanceSpec(
            server_id=server.server_id,
            host=server.host,
            port=server.port,
            username=server.account.username,
            password=self.password(server),
            color_depth=server.config.color_depth,
            audio=server.config.audio,
            clipboard=server.config.clipboard,
            drives=server.config.drive_redirection,
            crypt_level=xrdp.encryption_level,
            tls_protocols=xrdp.tls_protocols,
            bitmap_cache=xrdp.bitmap_cache,
            compression=xrdp.compression,
        )

    async def new_password(self, server: ServerRecord) -> str:
        """Gives the server's desktop account a fresh random password (one per client
        connection: the one handed out before no longer logs in) and stores it sealed."""
        password = accounts.new_password()
        sealed = await asyncio.to_thread(self.sealer.seal, password.encode())
        await self.backend.set_password(server.account.username, password)
        await self.store.update(
            server.server_id,
            {"account": {"username": server.account.username, "password_sealed": sealed}},
        )
        return password

    def password(self, server: ServerRecord) -> str:
        """The desktop account's password."""
        return self.sealer.unseal(server.account.password_sealed).decode()

    async def get(self, actor: Actor, server_id: str) -> ServerRecord:
        """A server the actor may see."""
        server = await self.store.get(server_id)
        if server is None:
            raise not_found(f"server {server_id}")
        actor.check_owner(server.user_id, f"server {server_id}")
        return server

    async def find(
        self, actor: Actor, *, state: str, user_id: str, offset: int, limit: int
    ) -> tuple[list[ServerRecord], int]:
        """Servers the actor may see, newest first, and how many match."""
        owner = user_id if actor.sees_all else actor.user_id
        states = (state,) if state else ()
        return (
            await self.store.find(user_id=owner, states=states, offset=offset, limit=limit),
            await self.store.count(user_id=owner, states=states),
        )

    async def _allocate(self, server_id: str, preferred: int) -> int:
        """Claims the preferred port if free, else the lowest free one; a port bound by
        another process is skipped."""
        first, last = self.config.port_first, self.config.port_last
        if preferred and not first <= preferred <= last:
            raise LucidError(
                ErrorCode.ERROR_CODE_OUT_OF_RANGE,
                f"the preferred port must be in {first}-{last}",
                field_violations=[FieldViolation("preferred_port", f"not in {first}-{last}")],
            )
        async with self._allocation:
            claimed = await self.store.claimed_ports()
            candidates = [p for p in range(first, last + 1) if p not in claimed]
            if preferred in candidates:
                candidates.remove(preferred)
                candidates.insert(0, preferred)
            for port in candidates:
                if not await asyncio.to_thread(port_bindable, self.config.host, port):
                    continue
                if await self.store.claim_port(port, server_id):
                    return port
        raise LucidError(
            ErrorCode.ERROR_CODE_RDP_PORTS_EXHAUSTED,
            f"no free port in {first}-{last}",
            retry_after_s=60,
        )

    async def create(
        self,
        actor: Actor,
        *,
        name: str,
        description: str,
        user_id: str,
        config: DesktopConfig,
        resources: Resources,
        preferred_port: int,
    ) -> ServerRecord:
        """A new stopped server with its port, files and desktop account."""
        owner = actor.owner_for(user_id)
        check_resources(resources)
        maximum = (await self.limits()).max_servers
        if await self.store.count() >= maximum:
            await self.auditor.record("limit_exceeded", actor.name, "servers", "max_servers")
            raise LucidError(
                ErrorCode.ERROR_CODE_RDP_SERVER_LIMIT, f"at most {maximum} servers may exist"
            )
        server_id = new_id()
        port = await self._allocate(server_id, preferred_port)
        now = self.clock.now()
        password = accounts.new_password()
        record = ServerRecord(
            server_id=server_id,
            user_id=owner,
            name=name,
            description=description,
            state=STOPPED,
            port=port,
            host=self.config.host,
            account=Account(
                accounts.username_for(self.config.account_prefix, server_id),
                await asyncio.to_thread(self.sealer.seal, password.encode()),
            ),
            config=config,
            resources=resources,
            created_at=now,
            updated_at=now,
        )
        try:
            await self.backend.prepare(self.spec(record))
            await self.store.insert(record)
        except BaseException:
            await self.store.release_ports(server_id)
            await self.backend.remove(self.spec(record))
            raise
        await self.auditor.record("server_create", actor.name, server_id, f"port {port}")
        return record

    async def update(
        self,
        actor: Actor,
        server_id: str,
        *,
        name: str,
        description: str,
        config: DesktopConfig | None,
        resources: Resources | None,
    ) -> ServerRecord:
        """Changes names, configuration or resources (applied at the next start)."""
        server = await self.get(actor, server_id)
        changes: dict[str, Any] = {"updated_at": self.clock.now()}
        if name:
            changes["name"] = name
        if description:
            changes["description"] = description
        if config is not None:
            changes["config"] = vars(config)
        if resources is not None:
            check_resources(resources)
            changes["resources"] = vars(resources)
        updated = await self.store.update(server.server_id, changes)
        if updated is None:
            raise not_found(f"server {server_id}")
        if config is not None:
            await self.backend.prepare(self.spec(updated))
        await self.auditor.record("server_update", actor.name, server_id)
        return updated

    async def start(self, actor: Actor, server_id: str) -> ServerRecord:
        """Spawns the listener; running once it accepts TCP, else error."""
        server = await self.get(actor, server_id)
        async with self._lock(server_id):
            if not await self.store.transition(
                server_id, STARTABLE, {"state": STARTING, "updated_at": self.clock.now()}
            ):
                server = await self.get(actor, server_id)
                raise LucidError(
                    ErrorCode.ERROR_CODE_INVALID_STATE,
                    f"server {server_id} is {server.state}; only a stopped server starts",
                )
            if await port_open(server.host, server.port):
                return await self._failed(server, f"port {server.port} is taken by another process")
            spec = self.spec(server, await self.xrdp_settings())
            try:
                await self.backend.prepare(spec)
                pid = await self.backend.spawn(spec)
            except StartError as exc:
                return await self._failed(server, str(exc))
            now = self.clock.now()
            started = await self.store.update(
                server_id,
                {
                    "state": RUNNING,
                    "pid": pid,
                    "error_message": "",
                    "started_at": now,
                    "updated_at": now,
                },
            )
        await self.auditor.record("server_start", actor.name, server_id, f"pid {pid}")
        assert started is not None
        return started

    async def _failed(self, server: ServerRecord, why: str) -> ServerRecord:
        await self.store.update(
            server.server_id,
            {"state": ERROR, "pid": 0, "error_message": why, "updated_at": self.clock.now()},
        )
        raise LucidError(
            ErrorCode.ERROR_CODE_RDP_SERVER_START_FAILED,
            f"server {server.server_id} did not start: {why}",
        )

    async def _open_sessions(self, server_id: str) -> int:
        return await self.sessions.open_count(server_id) if self.sessions else 0

    async def stop(self, actor: Actor, server_id: str, *, force: bool) -> tuple[ServerRecord, int]:
        """Stops the listener; with open sessions only when forced (they terminate)."""
        server = await self.get(actor, server_id)
        terminated = 0
        if await self._open_sessions(server_id):
            if not force:
                raise LucidError(
                    ErrorCode.ERROR_CODE_RDP_SERVER_HAS_SESSIONS,
                    f"server {server_id} has open RDP sessions; stop with force",
                )
            assert self.sessions is not None
            terminated = await self.sessions.terminate_on_server(server_id, "force", actor)
        async with self._lock(server_id):
            server = await self.get(actor, server_id)
            if server.state not in (RUNNING, ERROR, STARTING):
                raise LucidError(
                    ErrorCode.ERROR_CODE_INVALID_STATE, f"server {server_id} is {server.state}"
                )
            stopped = await self._stop_process(server, STOPPED)
        await self.auditor.record("server_stop", actor.name, server_id, f"force={force}")
        return stopped, terminated

    async def _stop_process(self, server: ServerRecord, state: str) -> ServerRecord:
        await self.store.update(server.server_id, {"state": STOPPING})
        await self.backend.stop(server.account.username, server.pid, self.config.stop_grace_s)
        now = self.clock.now()
        stopped = await self.store.update(
            server.server_id, {"state": state, "pid": 0, "stopped_at": now, "updated_at": now}
        )
        assert stopped is not None
        return stopped

    async def restart(
        self, actor: Actor, server_id: str, *, force: bool
    ) -> tuple[ServerRecord, int]:
        """Stop (if running), then start."""
        server = await self.get(actor, server_id)
        terminated = 0
        if server.state in (RUNNING, STARTING):
            _, terminated = await self.stop(actor, server_id, force=force)
        return await self.start(actor, server_id), terminated

    async def delete(self, actor: Actor, server_id: str) -> None:
        """Stops the server, removes its account and files, releases its port."""
        server = await self.get(actor, server_id)
        if await self._open_sessions(server_id):
            raise LucidError(
                ErrorCode.ERROR_CODE_RDP_SERVER_HAS_SESSIONS,
                f"server {server_id} has open RDP sessions",
            )
        async with self._lock(server_id):
            if server.state in (RUNNING, STARTING, ERROR):
                server = await self._stop_process(server, STOPPED)
            await self.backend.remove(self.spec(server))
            await self.store.delete(server_id)
            await self.store.release_ports(server_id)
        self._locks.pop(server_id, None)
        await self.auditor.record("server_delete", actor.name, server_id, f"port {server.port}")

    async def set_maintenance(
        self, actor: Actor, server_id: str, *, maintenance: bool, reason: str
    ) -> ServerRecord:
        """Takes a server out of service (stopping it) or back to stopped."""
        server = await self.get(actor, server_id)
        if maintenance:
            if await self._open_sessions(server_id) and self.sessions is not None:
                await self.sessions.terminate_on_server(server_id, "maintenance", actor)
            async with self._lock(server_id):
                if server.state in (RUNNING, STARTING, ERROR):
                    server = await self._stop_process(server, MAINTENANCE)
                else:
                    server = await self._set_state(server, MAINTENANCE)
        elif server.state == MAINTENANCE:
            server = await self._set_state(server, STOPPED)
        await self.auditor.record("server_maintenance", actor.name, server_id, reason)
        return server

    async def _set_state(self, server: ServerRecord, state: str) -> ServerRecord:
        updated = await self.store.update(
            server.server_id, {"state": state, "updated_at": self.clock.now()}
        )
        return updated or replace(server, state=state)

    async def status(self, actor: Actor, server_id: str) -> tuple[ServerRecord, int, float, bool]:
        """The server, its open sessions, uptime and whether its port answers."""
        server = await self.get(actor, server_id)
        uptime = 0.0
        if server.state == RUNNING and server.started_at:
            uptime = (self.clock.now() - server.started_at).total_seconds()
        reachable = await port_open(server.host, server.port)
        return server, await self._open_sessions(server_id), uptime, reachable

    async def check_processes(self) -> list[str]:
        """Moves running servers whose listener died to error; their ids."""
        died = []
        for server in await self.store.find(states=(RUNNING,)):
            if self.backend.alive(server.pid):
                continue
            if await self.store.transition(
                server.server_id,
                (RUNNING,),
                {
                    "state": ERROR,
                    "pid": 0,
                    "error_message": f"the xrdp process {server.pid} exited",
                    "updated_at": self.clock.now(),
                },
            ):
                died.append(server.server_id)
                log.warning("rdp server %s: xrdp process %s died", server.server_id, server.pid)
        return died

    async def monitor(self) -> None:
        """Checks the processes every ``monitor_interval_s`` (a background task)."""
        while True:
            try:
                await self.check_processes()
            except Exception:  # a failed round must not end the monitor
                log.exception("rdp server monitor round failed")
            await asyncio.sleep(self.config.monitor_interval_s)

    async def running(self, server_id: str) -> ServerRecord:
        """A running server (for a new session)."""
        server = await self.store.get(server_id)
        if server is None:
            raise not_found(f"server {server_id}")
        if server.state != RUNNING:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"server {server_id} is {server.state}; sessions need a running server",
            )
        return server

    async def stop_all(self) -> None:
        """Stops every running listener (the cluster is shutting down)."""
        for server in await self.store.find(states=(RUNNING, STARTING)):
            try:
                await self._stop_process(server, STOPPED)
            except Exception:
                log.exception("stopping rdp server %s failed", server.server_id)
