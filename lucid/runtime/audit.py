"""The audit trail of every cluster: who did what, from where, with what result.

One mechanism for the mesh. An event names the action, the caller (principal,
user, peer cluster, request id) and the client *as the edge reports it*: the
client address is the peer's, except behind the edge, where the edge (Envoy, identified
by its mTLS certificate) puts the client's address in ``x-envoy-external-address`` (and
appends it to ``x-forwarded-for``) and its User-Agent in ``x-forwarded-user-agent``,
and only then are those headers believed. Each cluster keeps its events in its own collection
(``auth_audit_events``, ``storage_audit_events``, …) in one document shape.
Secrets (signatures, tokens, link tokens, TOTP codes, values) are never passed in.

Two ways to record:
- ``AuditTrail.event`` records an action once it is over, as a success or as a
  failure with the Lucid reason; a failure to write is logged, never raised.
- ``audited`` (or ``begin`` / ``finish``) writes an ``attempt`` *before* a change
  and completes it afterwards; if the attempt cannot be written the change is
  refused (``LUCID_ERR_5003``), so nothing changes unaudited.

Both inserts are group-committed (``lucid.runtime.grouped``): a record is in the store
before the rpc that made it answers (an attempt before its change), as with one insert
each, but concurrent rpcs share round trips (logins under load: one insert for many
events instead of one each).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.context import Principal, current_principal, current_request_id
from lucid.runtime.errors import ErrorCode, LucidError, reason_of
from lucid.runtime.grouped import GroupedInserts
from lucid.runtime.identity import EDGE

log = logging.getLogger("lucid.runtime.audit")

FORWARDED_FOR = "x-forwarded-for"
EXTERNAL_ADDRESS = "x-envoy-external-address"
"""The client's address as the edge's Envoy saw it (``use_remote_address``; Envoy drops
a client's own ``x-envoy-*`` headers)."""
FORWARDED_USER_AGENT = "x-forwarded-user-agent"
USER_AGENT_MAX = 500
DETAIL_MAX = 500
SUCCESS = "success"
FAILURE = "failure"
ATTEMPT = "attempt"


@dataclass(frozen=True)
class Client:
    """The caller of an rpc as the audit trail records it."""

    principal: Principal
    ip: str
    user_agent: str
    request_id: str

    @property
    def user_id(self) -> str:
        """The signed-in user's id, if any."""
        return self.principal.user.user_id if self.principal.user else ""


def peer_address(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` → ``127.0.0.1``; ``ipv6:[::1]:5000`` → ``::1``."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return rest or peer


def client_of(context: grpc.aio.ServicerContext) -> Client:
    """Who is calling, from the pipeline's principal and the call metadata."""
    principal = current_principal()
    metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    ip = agent = ""
    if principal.peer.name == EDGE and principal.peer.is_known:
        ip = metadata.get(EXTERNAL_ADDRESS, "") or metadata.get(FORWARDED_FOR, "")
        ip = ip.split(",")[-1].strip()
        agent = metadata.get(FORWARDED_USER_AGENT, "")
    if not ip:
        ip = peer_address(context.peer() or "")
    return Client(
        principal=principal,
        ip=ip[:64],
        user_agent=(agent or metadata.get("user-agent", ""))[:USER_AGENT_MAX],
        request_id=current_request_id(),
    )


@dataclass
class Event:
    """An event being recorded; the code filling it in sets what it learns."""

    action: str
    user_id: str = ""
    tron_address: str = ""
    resource: str = ""
    session_id: str = ""
    details: dict[str, str] = field(default_factory=dict)


class AuditTrail:
    """Writes one cluster's audit events to its collection."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], clock: Clock) -> None:
        self.collection = collection
        self._clock = clock
        self._inserts = GroupedInserts(collection)

    def _document(self, event: Event, client: Client, result: str, reason: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "_id": new_id(),
            "event_time": self._clock.now(),
            "action": event.action,
            "result": result,
        }
        fields = {
            "reason": reason,
            "user_id": event.user_id or client.user_id,
            "tron_address": event.tron_address,
            "resource": event.resource,
            "session_id": event.session_id,
            "principal": client.principal.display,
            "peer": client.principal.peer.name,
            "ip_address": client.ip,
            "user_agent": client.user_agent[:USER_AGENT_MAX],
            "request_id": client.request_id,
            **event.details,
        }
        doc.update({key: value for key, value in fields.items() if value})
        return doc

    async def record(self, event: Event, client: Client, result: str, reason: str = "") -> None:
        """Writes one finished event; a failure to write is logged, never raised."""
        try:
            await self._inserts.insert(self._document(event, client, result, reason))
        except Exception:
            log.exception("audit write failed", extra={"action": event.action})

    @contextlib.asynccontextmanager
    async def event(self, action: str, client: Client, **known: Any) -> AsyncIterator[Event]:
        """Records ``action`` as a success, or as a failure with the error's reason."""
        event = Event(action, **known)
        try:
            yield event
        except LucidError as exc:
            await self.record(event, client, FAILURE, exc.reason)
            raise
        except Exception:
            await self.record(event, client, FAILURE, reason_of(5001))
            raise
        await self.record(event, client, SUCCESS)

    async def begin(self, event: Event, client: Client) -> str:
        """Records an attempt; raises ``LUCID_ERR_5003`` if it cannot be recorded."""
        doc = self._document(event, client, ATTEMPT, "")
        try:
            await self._inserts.insert(doc)
        except PyMongoError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE,
                "the audit log cannot be written; nothing was changed",
            ) from exc
        return str(doc["_id"])

    async def finish(self, event_id: str, result: str, reason: str = "", detail: str = "") -> None:
        """Records the outcome of an attempt (best effort: the change already happened)."""
        outcome: dict[str, Any] = {"result": result, "end_time": self._clock.now()}
        if reason:
            outcome["reason"] = reason
        if detail:
            outcome["detail"] = detail[:DETAIL_MAX]
        try:
            await self.collection.update_one({"_id": event_id}, {"$set": outcome})
        except PyMongoError:
            log.error("audit outcome not recorded", extra={"event_id": event_id})


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def audited(resource: Callable[[Any], str]) -> Callable[[Handler], Handler]:
    """Wraps a servicer method ``(self, request, context)`` whose ``self.audit`` is an
    ``AuditTrail``: the attempt (action = the rpc's name, ``resource(request)``) is
    recorded first, the outcome after."""

    def wrap(method: Handler) -> Handler:
        @functools.wraps(method)
        async def run(self: Any, request: Any, context: Any) -> Any:
            audit: AuditTrail = self.audit
            event = Event(method.__name__, resource=resource(request))
            event_id = await audit.begin(event, client_of(context))
            try:
                response = await method(self, request, context)
            except LucidError as exc:
                await audit.finish(event_id, FAILURE, exc.reason, exc.message)
                raise
            except BaseException as exc:
                await audit.finish(event_id, FAILURE, reason_of(5001), type(exc).__name__)
                raise
            await audit.finish(event_id, SUCCESS)
            return response

        return run  # type: ignore[return-value]

    return wrap
