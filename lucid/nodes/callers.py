"""Who acts on nodes: an operator (its own nodes only), an admin, or a service."""

from __future__ import annotations

from dataclasses import dataclass

from lucid.runtime.context import Principal


@dataclass(frozen=True)
class Caller:
    """The user (if any), whether an admin, and the calling service."""

    user_id: str
    is_admin: bool
    service: str

    @classmethod
    def of(cls, principal: Principal) -> Caller:
        """The caller of the current rpc."""
        user = principal.user
        return cls(
            user_id=user.user_id if user else "",
            is_admin=principal.is_admin,
            service=principal.peer.name,
        )

    @property
    def display(self) -> str:
        """What the audit log names: ``user:<id>`` or ``service:<name>``."""
        return f"user:{self.user_id}" if self.user_id else f"service:{self.service}"

    def may_act_on(self, owner_user_id: str) -> bool:
        """Operators act on their own nodes; admins and services (admin console) on all."""
        return not self.user_id or self.is_admin or self.user_id == owner_user_id
