"""Who acts on nodes (an operator: its own nodes only; an admin; a service), and the
audit trail every mutating operation of the cluster writes (``nodes_audit_events``,
``lucid.runtime.audit``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from lucid.runtime.audit import FAILURE, SUCCESS, AuditTrail, Client, Event, client_of
from lucid.runtime.context import Principal
from lucid.runtime.identity import identity_for


@dataclass(frozen=True)
class Caller:
    """The user (if any), whether an admin, the calling service, and the client as
    the audit trail records it."""

    user_id: str
    is_admin: bool
    service: str
    client: Client

    @classmethod
    def of(cls, context: grpc.aio.ServicerContext) -> Caller:
        """The caller of the current rpc."""
        client = client_of(context)
        user = client.principal.user
        return cls(
            user_id=user.user_id if user else "",
            is_admin=client.principal.is_admin,
            service=client.principal.peer.name,
            client=client,
        )

    @classmethod
    def cluster(cls) -> Caller:
        """The cluster itself (background work)."""
        principal = Principal(peer=identity_for("nodes"))
        return cls("", False, "nodes", Client(principal, "", "", ""))

    @property
    def display(self) -> str:
        """``user:<id>`` or ``service:<name>``."""
        return self.client.principal.display

    def may_act_on(self, owner_user_id: str) -> bool:
        """Operators act on their own nodes; admins and services (admin console) on all."""
        return not self.user_id or self.is_admin or self.user_id == owner_user_id


async def audit(
    trail: AuditTrail,
    caller: Caller,
    action: str,
    resource: str,
    *,
    failed: str = "",
    details: Mapping[str, object] | None = None,
) -> None:
    """Records one finished operation (a failure with its reason)."""
    event = Event(
        action,
        resource=resource,
        details={k: str(v) for k, v in (details or {}).items() if v not in ("", None)},
    )
    await trail.record(event, caller.client, FAILURE if failed else SUCCESS, failed)
