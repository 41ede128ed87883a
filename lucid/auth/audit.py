"""Auditing auth events, and who the client is (address, user agent).

Every auth event runs inside ``Auditor.event``: it is recorded once, as a success or
as a failure with the Lucid reason, with the client address and user agent, the
user, the TRON address and the login session when known. Secrets (signatures,
tokens, link tokens, TOTP codes) are never passed in.

The client address is the peer's, except behind the edge: the edge (Envoy, identified
by its mTLS certificate) puts the client's address in ``x-envoy-external-address`` (and
appends it to ``x-forwarded-for``) and its User-Agent in ``x-forwarded-user-agent``,
and only then are those headers believed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from lucid.auth.store.audit import USER_AGENT_MAX, AuditStore
from lucid.lib.clock import Clock
from lucid.runtime.context import Principal, current_principal, current_request_id
from lucid.runtime.errors import LucidError, reason_of
from lucid.runtime.identity import EDGE

log = logging.getLogger("lucid.auth.audit")

FORWARDED_FOR = "x-forwarded-for"
EXTERNAL_ADDRESS = "x-envoy-external-address"
"""The client's address as the edge's Envoy saw it (``use_remote_address``; Envoy drops
a client's own ``x-envoy-*`` headers)."""
FORWARDED_USER_AGENT = "x-forwarded-user-agent"
SUCCESS = "success"
FAILURE = "failure"


@dataclass(frozen=True)
class Client:
    """The caller of an rpc as auth records it."""

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


class Auditor:
    """Writes audit events."""

    def __init__(self, store: AuditStore, clock: Clock) -> None:
        self.store = store
        self._clock = clock

    async def record(self, event: Event, client: Client, result: str, reason: str = "") -> None:
        """Writes one event; a failure to write is logged, never raised."""
        try:
            await self.store.add(
                event_time=self._clock.now(),
                action=event.action,
                result=result,
                reason=reason,
                user_id=event.user_id or client.user_id,
                tron_address=event.tron_address,
                resource=event.resource,
                session_id=event.session_id,
                ip_address=client.ip,
                user_agent=client.user_agent,
                request_id=client.request_id,
                peer=client.principal.peer.name,
            )
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
