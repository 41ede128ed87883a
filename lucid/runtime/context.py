"""What the pipeline knows about the call being served, for the servicer to read.

The pipeline sets these context variables before the servicer runs; outgoing calls
made while serving (``channels``) read the request id from here to propagate it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from lucid.common.v1 import access_pb2
from lucid.runtime.identity import ServiceIdentity


@dataclass(frozen=True)
class UserClaims:
    """A verified access token's subject."""

    user_id: str
    role: int
    kyc_status: int
    session_id: str
    jti: str
    expires_at: float


@dataclass(frozen=True)
class Principal:
    """Who is calling: the peer service from mTLS, and the user from the token if any."""

    peer: ServiceIdentity
    user: UserClaims | None = None
    token: str = ""
    """The raw bearer token, to forward on behalf of the user; never logged."""
    relayed: bool = False
    """The edge relayed the call for a client: the peer's service identity grants nothing,
    only the token counts (see ``lucid.runtime.planes.RELAYED_HEADER``)."""

    @property
    def display(self) -> str:
        """A log-safe name: ``user:<id>``, ``anonymous`` (relayed, no token) or
        ``service:<name>``."""
        if self.user:
            return f"user:{self.user.user_id}"
        if self.relayed:
            return "anonymous"
        return f"service:{self.peer.name}"

    @property
    def is_admin(self) -> bool:
        """Whether the user holds the admin role or higher."""
        return bool(self.user and self.user.role >= access_pb2.ROLE_ADMIN)


request_id_var: ContextVar[str] = ContextVar("lucid_request_id", default="")
principal_var: ContextVar[Principal | None] = ContextVar("lucid_principal", default=None)


def current_request_id() -> str:
    """The id of the request being served ("" outside a call)."""
    return request_id_var.get()


def current_principal() -> Principal:
    """The caller of the request being served."""
    principal = principal_var.get()
    if principal is None:
        raise RuntimeError("no call is being served")
    return principal
