"""RDP sessions on running servers (spec 04 §3, §4.3): create (recording starts in
cluster 03 under the same id), connect (credentials and a one-time token; 2205 when
a client is already connected), disconnect, terminate (the recording stops and is
finalized), and the sweep of idle and expired sessions.

States: create → active; connect sets ``connected``; disconnect → disconnected →
(connect) active; idle beyond the idle timeout → disconnected; older than the
session timeout → terminated; terminate → terminated (final).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.rdp.actor import Actor
from lucid.rdp.audit import Auditor
from lucid.rdp.config import RdpConfig
from lucid.rdp.recorder import Recorder
from lucid.rdp.recording import Recordings
from lucid.rdp.records import ClientDetails, Limits, ServerRecord, SessionRecord
from lucid.rdp.servers import Servers
from lucid.rdp.store.sessions import SessionFilter, SessionStore
from lucid.runtime.errors import ErrorCode, LucidError, not_found

log = logging.getLogger("lucid.rdp.sessions")

ACTIVE, DISCONNECTED, TERMINATED = "active", "disconnected", "terminated"
OPEN = (ACTIVE, DISCONNECTED, "idle", "creating")
TOKEN_BYTES = 32


@dataclass(frozen=True)
class Connection:
    """What Connect hands the client."""

    session: SessionRecord
    server: ServerRecord
    username: str
    password: str
    token: str
    expires_at: datetime


def _invalid(session: SessionRecord) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_INVALID_STATE, f"RDP session {session.session_id} is {session.state}"
    )


class RdpSessions:
    """Session rules; recordings go through cluster 03's rpcs."""

    def __init__(
        self,
        store: SessionStore,
        servers: Servers,
        *,
        recordings: Recordings,
        recorder: Recorder,
        config: RdpConfig,
        clock: Clock,
        auditor: Auditor,
        limits: Callable[[], Awaitable[Limits]],
    ) -> None:
        self.limits = limits
        self.store = store
        self.servers = servers
        self.recordings = recordings
        self.recorder = recorder
        self.config = config
        self.clock = clock
        self.auditor = auditor
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    async def get(self, actor: Actor, session_id: str) -> SessionRecord:
        """A session the actor may see."""
        session = await self.store.get(session_id)
        if session is None:
            raise not_found(f"RDP session {session_id}")
        actor.check_owner(session.user_id, f"RDP session {session_id}")
        return session

    async def find(
        self, actor: Actor, *, user_id: str, server_id: str, state: str, offset: int, limit: int
    ) -> tuple[list[SessionRecord], int]:
        """Sessions the actor may see, newest first, and how many match."""
        where = SessionFilter(
            user_id=user_id if actor.sees_all else actor.user_id,
            server_id=server_id,
            states=(state,) if state else (),
        )
        return (
            await self.store.find(where, offset=offset, limit=limit),
            await self.store.count(where),
        )

    async def create(
        self, actor: Actor, *, server_id: str, user_id: str, session_id: str, client: ClientDetails
    ) -> SessionRecord:
        """Opens a session on a running server of the owner and starts its recording."""
        owner = actor.owner_for(user_id)
        server = await self.servers.running(server_id)
        actor.check_owner(server.user_id, f"server {server_id}")
        if server.user_id != owner:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                f"server {server_id} belongs to another user",
            )
        maximum = (await self.limits()).max_sessions
        if await self.store.count(SessionFilter(states=OPEN)) >= maximum:
            await self.auditor.record("limit_exceeded", actor.name, "sessions", "max_sessions")
            raise LucidError(
                ErrorCode.ERROR_CODE_RDP_SESSION_LIMIT,
                f"at most {maximum} RDP sessions may be open",
            )
        now = self.clock.now()
        record = SessionRecord(
            session_id=session_id or new_id(),
            server_id=server_id,
            user_id=owner,
            state="creating",
            created_at=now,
            last_activity=now,
            client=client,
        )
        await self.store.insert(record)
        try:
            await self.recordings.begin(
                session_id=record.session_id,
                owner_user_id=owner,
                server_id=server_id,
                server_name=server.name,
                host=server.host,
                port=server.port,
                username=server.account.username,
                frame_rate=self.config.frame_rate,
                resolution=self.config.resolution,
            )
        except grpc.aio.AioRpcError as exc:
            await self.store.delete(record.session_id)
            raise LucidError(
                ErrorCode.ERROR_CODE_DEPENDENCY_UNAVAILABLE,
                f"the recording could not start: {exc.code().name} {exc.details()}",
            ) from exc
        active = await self.store.transition(record.session_id, ("creating",), {"state": ACTIVE})
        assert active is not None
        self.recorder.start(record.session_id, server.account.username)
        await self.auditor.record("session_create", actor.name, record.session_id, server_id)
        return active

    async def connect(self, actor: Actor, session_id: str, client: ClientDetails) -> Connection:
        """Issues the connection: server address, account, password, one-time token."""
        async with self._lock(session_id):
            session = await self.get(actor, session_id)
            if session.state not in (ACTIVE, DISCONNECTED):
                raise _invalid(session)
            if session.connected:
                raise LucidError(
                    ErrorCode.ERROR_CODE_RDP_SESSION_ALREADY_CONNECTED,
                    f"RDP session {session_id} already has a connected client",
                )
            server = await self.servers.running(session.server_id)
            token = secrets.token_urlsafe(TOKEN_BYTES)
            now = self.clock.now()
            expires = now + timedelta(seconds=self.config.token_ttl_s)
            changes: dict[str, Any] = {
                "state": ACTIVE,
                "connected": True,
                "connected_at": now,
                "last_activity": now,
                "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                "token_expires_at": expires,
            }
            if client != ClientDetails():
                changes["client"] = vars(client)
            updated = await self.store.transition(session_id, (ACTIVE, DISCONNECTED), changes)
            if updated is None:
                raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "the session changed")
            password = await self.servers.new_password(server)
        return Connection(updated, server, server.account.username, password, token, expires)

    async def disconnect(self, actor: Actor, session_id: str) -> SessionRecord:
        """Drops the client; the session may be connected again."""
        async with self._lock(session_id):
            session = await self.get(actor, session_id)
            if session.state not in (ACTIVE, DISCONNECTED):
                raise _invalid(session)
            return await self._disconnect(session)

    async def _disconnect(self, session: SessionRecord) -> SessionRecord:
        server = await self.servers.store.get(session.server_id)
        if server is not None and server.pid:
            await self.servers.backend.end_client_connections(server.pid)
        updated = await self.store.transition(
            session.session_id,
            (ACTIVE, DISCONNECTED),
            {
                "state": DISCONNECTED,
                "connected": False,
                "disconnected_at": self.clock.now(),
                "token_sha256": "",
            },
        )
        if updated is None:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "the session changed")
        return updated

    async def terminate(
        self, actor: Actor, session_id: str, *, reason: str = "user", force: bool = False
    ) -> SessionRecord:
        """Ends the session: the capture's last segment is stored, the recording is
        stopped and finalized, the client dropped."""
        async with self._lock(session_id):
            session = await self.get(actor, session_id)
            if session.state == TERMINATED:
                raise LucidError(
                    ErrorCode.ERROR_CODE_INVALID_STATE, f"RDP session {session_id} is terminated"
                )
            stats = await self.recorder.stop(session_id)
            try:
                await self.recordings.finish(session_id)
            except grpc.aio.AioRpcError as exc:
                if not force:
                    raise LucidError(
                        ErrorCode.ERROR_CODE_DEPENDENCY_UNAVAILABLE,
                        f"the recording could not be finalized: {exc.code().name}"
                        f" {exc.details()}; terminate with force to end it anyway",
                    ) from exc
                log.warning("RDP session %s: forced past finalize: %s", session_id, exc.details())
            server = await self.servers.store.get(session.server_id)
            if server is not None and server.pid:
                await self.servers.backend.end_client_connections(server.pid)
            now = self.clock.now()
            ended = await self.store.transition(
                session_id,
                OPEN,
                {
                    "state": TERMINATED,
                    "connected": False,
                    "terminated_at": now,
                    "termination_reason": reason,
                    "token_sha256": "",
                },
            )
        self._locks.pop(session_id, None)
        await self.auditor.record(
            "session_terminate", actor.name, session_id, f"{reason}; {stats.segments} segments"
        )
        if ended is None:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "the session changed")
        return ended

    async def resume_recordings(self) -> int:
        """Restarts the recorders of open sessions (after this server restarted); how many."""
        resumed = 0
        for session in await self.store.find(SessionFilter(states=(ACTIVE, DISCONNECTED))):
            server = await self.servers.store.get(session.server_id)
            if server is not None:
                self.recorder.start(session.session_id, server.account.username)
                resumed += 1
        return resumed

    async def open_count(self, server_id: str) -> int:
        """Sessions not terminated on a server."""
        return await self.store.count(SessionFilter(server_id=server_id, states=OPEN))

    async def open_on_server(self, server_id: str) -> list[str]:
        """The ids of a server's sessions not terminated."""
        found = await self.store.find(SessionFilter(server_id=server_id, states=OPEN))
        return [s.session_id for s in found]

    async def terminate_on_server(self, server_id: str, reason: str, actor: Actor) -> int:
        """Terminates every open session of a server; how many."""
        sessions = await self.store.find(SessionFilter(server_id=server_id, states=OPEN))
        for session in sessions:
            await self.terminate(actor, session.session_id, reason=reason, force=True)
        return len(sessions)

    async def terminate_all(self, actor: Actor, reason: str) -> tuple[int, int]:
        """Terminates every open session (emergency); (terminated, failed)."""
        done = failed = 0
        for session in await self.store.find(SessionFilter(states=OPEN)):
            try:
                await self.terminate(actor, session.session_id, reason=reason, force=True)
                done += 1
            except LucidError:
                failed += 1
        return done, failed

    async def sweep(self, actor: Actor) -> None:
        """Idle sessions → disconnected; sessions past the session timeout or the
        per-session maximum duration (a resource limit), whichever is shorter →
        terminated."""
        now = self.clock.now()
        longest = min(self.config.session_timeout_s, (await self.limits()).session_max_duration_s)
        expired = now - timedelta(seconds=longest)
        for session in await self.store.find(
            SessionFilter(states=(ACTIVE, DISCONNECTED), created_before=expired)
        ):
            await self.terminate(actor, session.session_id, reason="timeout", force=True)
        await self._touch_connected(now)
        idle = now - timedelta(seconds=self.config.idle_timeout_s)
        for session in await self.store.find(SessionFilter(states=(ACTIVE,), active_before=idle)):
            async with self._lock(session.session_id):
                current = await self.store.get(session.session_id)
                if current is not None and current.state == ACTIVE:
                    await self._disconnect(current)
                    log.info("RDP session %s idle → disconnected", session.session_id)

    async def _touch_connected(self, now: datetime) -> None:
        """A session whose server has a connected RDP client was last active at the
        desktop's last input (the X server's idle time); when that cannot be read, a
        connected client counts as activity."""
        backend = self.servers.backend
        for session in await self.store.find(SessionFilter(states=(ACTIVE,))):
            server = await self.servers.store.get(session.server_id)
            if server is None or not server.pid or not backend.client_count(server.pid):
                continue
            seen = now
            display = await asyncio.to_thread(backend.display, server.account.username)
            if display is not None:
                idle = await asyncio.to_thread(backend.input_idle_s, display)
                if idle is not None:
                    seen = now - timedelta(seconds=idle)
            if seen > session.last_activity:
                await self.store.transition(session.session_id, (ACTIVE,), {"last_activity": seen})

    async def sweeper(self, actor: Actor) -> None:
        """Runs ``sweep`` every ``sweep_interval_s`` (a background task)."""
        while True:
            try:
                await self.sweep(actor)
            except Exception:  # a failed round must not end the sweeper
                log.exception("RDP session sweep failed")
            await asyncio.sleep(self.config.sweep_interval_s)
