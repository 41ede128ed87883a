"""Who acts on rdp objects, and the "own objects only" rule (spec 04 §2)."""

from __future__ import annotations

from dataclasses import dataclass

from lucid.runtime.context import Principal
from lucid.runtime.errors import ErrorCode, LucidError


@dataclass(frozen=True)
class Actor:
    """The caller: a user (maybe an admin), or a service acting on its own."""

    user_id: str
    is_admin: bool
    service: str

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        """The actor of the current call."""
        user = principal.user
        return cls(user.user_id if user else "", principal.is_admin, principal.peer.name)

    @property
    def sees_all(self) -> bool:
        """Admins and services acting on their own see every object."""
        return self.is_admin or not self.user_id

    @property
    def name(self) -> str:
        """For the audit log."""
        return f"user:{self.user_id}" if self.user_id else f"service:{self.service}"

    def owner_for(self, requested: str) -> str:
        """The owner of an object created with ``requested`` as its user (empty: the
        caller); only admins and services may name someone else."""
        if not requested or requested == self.user_id:
            if not self.user_id:
                raise LucidError(ErrorCode.ERROR_CODE_MISSING_FIELD, "user_id is required")
            return self.user_id
        if not self.sees_all:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED, "only admins act for another user"
            )
        return requested

    def check_owner(self, owner: str, what: str) -> None:
        """Refuses a user who is neither the owner nor an admin (PERMISSION_DENIED)."""
        if not self.sees_all and owner != self.user_id:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED, f"{what} belongs to another user"
            )
