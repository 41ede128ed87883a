"""gRPC adapters of the payments contract: proto ↔ domain, nothing else."""

from __future__ import annotations

from lucid.common.v1 import access_pb2
from lucid.payments.wallets import Actor
from lucid.runtime.context import current_principal


def current_actor() -> Actor:
    """The caller as the domain sees it: a user (admins see everyone's), or a service."""
    principal = current_principal()
    if principal.user is None:
        return Actor(display=principal.display, sees_all=True)
    return Actor(
        display=principal.display,
        user_id=principal.user.user_id,
        sees_all=principal.user.role >= access_pb2.ROLE_ADMIN,
    )
