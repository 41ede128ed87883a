"""Session rules: creation, ownership, the state machine, statistics, the pipeline,
audit events and the emergency switches. Works on stored documents; the servicer
turns them into messages. Every refusal is a ``LucidError`` raised before
anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from pymongo.errors import DuplicateKeyError

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.lib.ratelimit import Policy
from lucid.runtime.context import Principal
from lucid.runtime.datastores import prefix
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError, not_found
from lucid.runtime.events import EventPublisher
from lucid.runtime.limits import Limit, RateLimiter
from lucid.sessions.config import SessionsConfig
from lucid.sessions.states import State, can_move, sources_of
from lucid.sessions.store.repository import Doc, Repository

log = logging.getLogger("lucid.sessions")

REDIS_PREFIX = prefix("sessions")
CREATION_DISABLED_KEY = f"{REDIS_PREFIX}creation_disabled"
DEFAULT_AUTO_REVERT_S = 12 * 3600
DEFAULT_MAX_SIZE_BYTES = 10 * 1024**3
SESSION_SIZE_CAP = 100 * 1024**3

PIPELINE_INACTIVE = "inactive"
PIPELINE_ACTIVE = "active"
PIPELINE_PAUSED = "paused"
PIPELINE_ERROR = "error"
PIPELINE_STOPPED = "stopped"
STAGES = (
    "recording",
    "chunk_generation",
    "compression",
    "encryption",
    "storage",
    "merkle_building",
)

Flusher = Callable[[str, bool], Awaitable[None]]
"""Flushes (and with True, closes) the open upload stream of a session, if any."""


def invalid_state(doc: Mapping[str, Any], action: str) -> LucidError:
    """``LUCID_ERR_4007`` naming the state that forbids ``action``."""
    return LucidError(
        ErrorCode.ERROR_CODE_INVALID_STATE,
        f"cannot {action} a session that is {doc['state']}",
        metadata={"state": str(doc["state"])},
    )


@dataclass
class Caller:
    """Who acts: the user (if any), whether an admin, the calling service, the address."""

    user_id: str
    is_admin: bool
    service: str
    ip: str = ""

    @classmethod
    def of(cls, principal: Principal, ip: str = "") -> Caller:
        """The caller of the current rpc."""
        user = principal.user
        return cls(
            user_id=user.user_id if user else "",
            is_admin=principal.is_admin,
            service=principal.peer.name,
            ip=ip,
        )

    @property
    def is_service(self) -> bool:
        """A service acting on its own (no user token)."""
        return not self.user_id

    def may_see(self, owner_user_id: str) -> bool:
        """Whether the caller may see a resource of ``owner_user_id``."""
        return self.is_service or self.is_admin or self.user_id == owner_user_id


@dataclass(frozen=True)
class SessionFilter:
    """Which sessions a list shows ("" for any)."""

    state: str = ""
    project: str = ""
    environment: str = ""
    tag: str = ""


class Sessions:
    """The session lifecycle."""

    def __init__(
        self,
        repo: Repository,
        cache: aioredis.Redis,
        clock: Clock,
        config: SessionsConfig,
        events: EventPublisher | None = None,
    ) -> None:
        self.repo = repo
        self.publisher = events
        self.cache = cache
        self.clock = clock
        self.config = config
        self.limiter = RateLimiter(cache, clock, "sessions")
        self.create_limit = Limit("create", Policy(limit=config.create_per_minute, window_s=60.0))
        self.flusher: Flusher | None = None
        self.on_stopped: Callable[[str], None] | None = None
        self.on_deleted: Callable[[list[Doc]], Awaitable[None]] | None = None

    # -- reading ----------------------------------------------------------------

    async def get(self, session_id: str, caller: Caller) -> Doc:
        """A session the caller may see (others look like they do not exist)."""
        doc = await self.repo.session(session_id)
        if doc is None or not caller.may_see(doc["owner_user_id"]):
            raise not_found(f"session {session_id}")
        return doc

    def owner_filter(self, caller: Caller, owner_user_id: str) -> dict[str, Any]:
        """The owner part of a query: the caller's own, or anyone's for admins and services."""
        if owner_user_id:
            if not (caller.is_admin or caller.is_service) and owner_user_id != caller.user_id:
                raise LucidError(
                    ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                    "only admins may read other users' sessions",
                )
            return {"owner_user_id": owner_user_id}
        if caller.is_admin or caller.is_service:
            return {}
        return {"owner_user_id": caller.user_id}

    async def page(
        self,
        caller: Caller,
        owner_user_id: str,
        where: SessionFilter,
        order: list[tuple[str, int]],
        *,
        offset: int,
        limit: int,
    ) -> tuple[list[Doc], int]:
        """A page of the sessions the caller may list (deleted ones only when asked)."""
        query = self.owner_filter(caller, owner_user_id)
        query["state"] = where.state or {"$ne": State.DELETED.value}
        for field, value in (
            ("metadata.project", where.project),
            ("metadata.environment", where.environment),
            ("metadata.tags", where.tag),
        ):
            if value:
                query[field] = value
        return await self.repo.list_sessions(query, order, offset, limit)

    async def events(
        self, session_id: str, caller: Caller, event_type: str, *, offset: int, limit: int
    ) -> tuple[list[Doc], int]:
        """A page of a session's audit events, newest first."""
        await self.get(session_id, caller)
        query: Doc = {"session_id": session_id}
        if event_type:
            query["event_type"] = event_type
        return await self.repo.list_events(query, offset, limit)

    # -- creation ---------------------------------------------------------------

    async def _check_rate(self, user_id: str) -> None:
        await self.limiter.enforce(self.create_limit, user_id)

    async def _check_reachable(self, host: str, port: int) -> None:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.config.rdp_connect_timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_RDP_HOST_UNREACHABLE,
                f"the RDP host {host}:{port} does not answer on TCP",
                field_violations=[FieldViolation("rdp_config.host", "not reachable by TCP in 5 s")],
            ) from exc
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def create(self, fields: Mapping[str, Any], caller: Caller) -> Doc:
        """Creates a session in ``created``."""
        if await self.cache.get(CREATION_DISABLED_KEY):
            raise LucidError(
                ErrorCode.ERROR_CODE_SESSION_CREATION_DISABLED,
                "the creation of new sessions is disabled",
            )
        owner = fields.get("owner_user_id") or caller.user_id
        if owner != caller.user_id and not (caller.is_admin or caller.is_service):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "only admins and services may create sessions for other users",
            )
        if not owner:
            raise LucidError(
                ErrorCode.ERROR_CODE_MISSING_FIELD,
                "a service must name the owner of the session",
                field_violations=[FieldViolation("owner_user_id", "required for service callers")],
            )
        await self._check_rate(owner)
        rdp = fields.get("rdp")
        if rdp:
            await self._check_reachable(rdp["host"], rdp["port"])
        now = self.clock.now()
        session_id = fields.get("session_id") or new_id()
        doc: Doc = {
            "_id": session_id,
            "owner_user_id": owner,
            "name": fields["name"],
            "description": fields.get("description", ""),
            "state": State.CREATED.value,
            "rdp": rdp,
            "recording": fields["recording"],
            "storage": fields["storage"],
            "metadata": fields["metadata"],
            "trust_policy_id": fields.get("trust_policy_id", ""),
            "rdp_server_id": fields.get("rdp_server_id", ""),
            "stats": {},
            "anchoring": {},
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self.repo.insert_session(doc)
        except DuplicateKeyError:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"session {session_id} already exists"
            ) from None
        await self.repo.upsert_pipeline(
            session_id,
            {
                "state": PIPELINE_INACTIVE,
                "stages": {stage: {} for stage in STAGES},
                "created_at": now,
                "updated_at": now,
            },
        )
        await self.audit("session.create", session_id, caller)
        self._changed(doc, "create", caller)
        return doc

    # -- changes ----------------------------------------------------------------

    async def update(self, session_id: str, changes: Mapping[str, Any], caller: Caller) -> Doc:
        """Changes the mutable fields of a session."""
        doc = await self.get(session_id, caller)
        if doc["state"] == State.DELETED:
            raise invalid_state(doc, "update")
        if "recording" in changes and doc["state"] != State.CREATED:
            raise invalid_state(doc, "change the recording configuration of")
        if not changes:
            return doc
        states = [State.CREATED.value] if "recording" in changes else None
        updated = await self.repo.update_session(
            session_id, {**changes, "updated_at": self.clock.now()}, states=states
        )
        if updated is None:
            raise invalid_state(await self.get(session_id, caller), "update")
        await self.audit("session.update", session_id, caller)
        return updated

    async def move(
        self,
        session_id: str,
        target: State,
        caller: Caller | None,
        action: str,
        *,
        changes: Mapping[str, Any] | None = None,
        sources: frozenset[State] | None = None,
    ) -> Doc:
        """Moves a session to ``target`` if its state allows; FAILED_PRECONDITION otherwise."""
        allowed = sources if sources is not None else sources_of(target)
        now = self.clock.now()
        updated = await self.repo.update_session(
            session_id,
            {"state": target.value, "updated_at": now, **(changes or {})},
            states=[s.value for s in allowed],
        )
        if updated is None:
            doc = await self.repo.session(session_id)
            if doc is None or (caller and not caller.may_see(doc["owner_user_id"])):
                raise not_found(f"session {session_id}")
            raise invalid_state(doc, action)
        self._changed(updated, action, caller)
        return updated

    def _changed(self, doc: Doc, action: str, caller: Caller | None) -> None:
        """Publishes ``session.state-changed`` (the admin dashboard and audit log read it)."""
        if self.publisher is None:
            return
        self.publisher.emit(
            "session.state-changed",
            {
                "session_id": doc["_id"],
                "owner_user_id": doc["owner_user_id"],
                "state": doc["state"],
                "action": action,
                "by_user_id": caller.user_id if caller else "",
            },
        )

    async def start(self, session_id: str, caller: Caller) -> Doc:
        """created → starting → recording."""
        doc = await self.get(session_id, caller)
        if not can_move(State(doc["state"]), State.STARTING):
            raise invalid_state(doc, "start")
        await self.move(session_id, State.STARTING, caller, "start")
        now = self.clock.now()
        started = await self.move(
            session_id, State.RECORDING, caller, "start", changes={"started_at": now}
        )
        await self.repo.upsert_pipeline(session_id, {"state": PIPELINE_ACTIVE, "updated_at": now})
        await self.audit("session.start", session_id, caller)
        return started

    async def pause(self, session_id: str, caller: Caller) -> Doc:
        """recording → paused, flushing the partial buffer as a chunk."""
        doc = await self.get(session_id, caller)
        if doc["state"] != State.RECORDING:
            raise invalid_state(doc, "pause")
        if self.flusher is not None:
            await self.flusher(session_id, False)
        paused = await self.move(
            session_id, State.PAUSED, caller, "pause", sources=frozenset({State.RECORDING})
        )
        await self.audit("session.pause", session_id, caller)
        return paused

    async def resume(self, session_id: str, caller: Caller) -> Doc:
        """paused → recording."""
        await self.get(session_id, caller)
        resumed = await self.move(
            session_id, State.RECORDING, caller, "resume", sources=frozenset({State.PAUSED})
        )
        await self.audit("session.resume", session_id, caller)
        return resumed

    async def stop(self, session_id: str, caller: Caller | None) -> Doc:
        """recording or paused → stopped, flushing the partial buffer as the last chunk,
        then hands the session to finalization."""
        doc = await self.repo.session(session_id)
        if doc is None or (caller and not caller.may_see(doc["owner_user_id"])):
            raise not_found(f"session {session_id}")
        if doc["state"] not in (State.RECORDING, State.PAUSED):
            raise invalid_state(doc, "stop")
        if self.flusher is not None:
            await self.flusher(session_id, True)
        stopped = await self.move(
            session_id,
            State.STOPPED,
            caller,
            "stop",
            changes={"stopped_at": self.clock.now()},
            sources=frozenset({State.RECORDING, State.PAUSED}),
        )
        await self.audit("session.stop", session_id, caller)
        if self.on_stopped is not None:
            self.on_stopped(session_id)
        return stopped

    async def delete(self, session_id: str, caller: Caller) -> None:
        """Deletes a session with its chunks, blobs, pipeline and manifest."""
        doc = await self.get(session_id, caller)
        if doc["state"] == State.DELETED:
            return
        if caller.user_id and doc["owner_user_id"] != caller.user_id and not caller.is_admin:
            raise not_found(f"session {session_id}")
        await self.move(session_id, State.DELETED, caller, "delete")
        chunks = await self.repo.chunks_of(session_id)
        if self.on_deleted is not None:
            await self.on_deleted(chunks)
        await self.repo.delete_chunk_rows(session_id)
        await self.repo.delete_pipeline(session_id)
        await self.repo.delete_manifest(session_id)
        await self.audit("session.delete", session_id, caller)

    # -- statistics ---------------------------------------------------------------

    async def aggregate(self, caller: Caller, owner_user_id: str, all_users: bool) -> Doc:
        """Counters over the caller's sessions (admins: anyone's or all)."""
        if all_users and not (caller.is_admin or caller.is_service):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED, "only admins may aggregate over all users"
            )
        query = {} if all_users else self.owner_filter(caller, owner_user_id)
        if not all_users and not query:
            query = {"owner_user_id": caller.user_id} if caller.user_id else {}
        result: Doc = {"total": 0, "by_state": {}, "chunks": 0, "bytes": 0, "duration_s": 0.0}
        projection = {"state": 1, "stats": 1}
        async for doc in self.repo.sessions_where(query, projection):
            result["total"] += 1
            result["by_state"][doc["state"]] = result["by_state"].get(doc["state"], 0) + 1
            stats = doc.get("stats") or {}
            result["chunks"] += int(stats.get("chunk_count", 0))
            result["bytes"] += int(stats.get("stored_bytes", 0))
            result["duration_s"] += float(stats.get("duration_s", 0.0))
        return result

    # -- pipeline -----------------------------------------------------------------

    async def pipeline(self, session_id: str, caller: Caller) -> Doc:
        """A session's pipeline."""
        await self.get(session_id, caller)
        doc = await self.repo.pipeline(session_id)
        if doc is None:
            raise not_found(f"pipeline of session {session_id}")
        return doc

    async def set_pipeline(self, session_id: str, caller: Caller, pause: bool) -> Doc:
        """active → paused, or paused → active."""
        await self.get(session_id, caller)
        source, target = (
            (PIPELINE_ACTIVE, PIPELINE_PAUSED) if pause else (PIPELINE_PAUSED, PIPELINE_ACTIVE)
        )
        doc = await self.repo.update_pipeline(
            session_id, {"state": target, "updated_at": self.clock.now()}, [source]
        )
        if doc is None:
            current = await self.repo.pipeline(session_id)
            state = current["state"] if current else "missing"
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"cannot {'pause' if pause else 'resume'} a pipeline that is {state}",
                metadata={"state": state},
            )
        await self.audit(f"pipeline.{'pause' if pause else 'resume'}", session_id, caller)
        return doc

    # -- emergency ----------------------------------------------------------------

    async def set_creation_enabled(self, enabled: bool, auto_revert_s: float | None) -> Doc:
        """Turns the creation of new sessions off (reverting by itself) or on."""
        if enabled:
            await self.cache.delete(CREATION_DISABLED_KEY)
            return {"enabled": True, "revert_time": None}
        seconds = int(auto_revert_s or DEFAULT_AUTO_REVERT_S)
        await self.cache.set(CREATION_DISABLED_KEY, "1", ex=seconds)
        return {"enabled": False, "revert_time": self.clock.now() + timedelta(seconds=seconds)}

    async def stop_all(self, caller: Caller) -> list[str]:
        """Stops every recording and paused session."""
        stopped: list[str] = []
        query = {"state": {"$in": [State.RECORDING.value, State.PAUSED.value]}}
        ids = [doc["_id"] async for doc in self.repo.sessions_where(query, {"_id": 1})]
        for session_id in ids:
            try:
                await self.stop(session_id, None)
            except LucidError:  # it moved on by itself meanwhile
                continue
            stopped.append(session_id)
        return stopped

    # -- audit --------------------------------------------------------------------

    async def audit(
        self,
        event_type: str,
        session_id: str,
        caller: Caller | None,
        *,
        resource_id: str = "",
        success: bool = True,
        when: datetime | None = None,
    ) -> None:
        """Records an audit event (spec 03 §5)."""
        await self.repo.insert_event(
            {
                "_id": new_id(),
                "event_time": when or self.clock.now(),
                "event_type": event_type,
                "user_id": caller.user_id if caller else "",
                "service": caller.service if caller else "sessions",
                "session_id": session_id,
                "resource_id": resource_id,
                "ip_address": caller.ip if caller else "",
                "success": success,
            }
        )
