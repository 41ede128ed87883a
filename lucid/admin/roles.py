"""Console roles (spec 06 §4): the system roles (super_admin, admin, operator,
read_only, never deleted or changed), custom roles, and their assignment to users.
Every change is audited."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.store.roles import RoleRecord, RoleStore, name_taken
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.audit import Client
from lucid.runtime.errors import ErrorCode, LucidError

RESOURCES = ("users", "sessions", "nodes", "blockchain", "payouts", "config", "audit")
ACTIONS = ("create", "read", "update", "delete", "manage")
EXTRA = (
    "sessions_terminate",
    "nodes_control",
    "blockchain_anchor",
    "payouts_trigger",
    "audit_export",
    "emergency_control",
    "emergency_sessions",
)
ALL = tuple(f"{r}_{a}" for r in RESOURCES for a in ACTIONS) + EXTRA
READS = tuple(f"{r}_read" for r in RESOURCES)
SYSTEM_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "super_admin": ("Everything", ALL),
    "admin": (
        "Day-to-day administration",
        (
            "users_read",
            "sessions_read",
            "sessions_terminate",
            "nodes_read",
            "blockchain_read",
            "blockchain_anchor",
            "payouts_read",
            "payouts_trigger",
            "config_read",
            "audit_read",
            "emergency_sessions",
        ),
    ),
    "operator": ("Reads everything", READS),
    "read_only": ("Views only", READS),
}


class Roles:
    """Role CRUD and assignment."""

    def __init__(self, store: RoleStore, audit: AuditLog, clock: Clock) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock

    async def seed(self) -> None:
        """Creates the system roles that do not exist yet (idempotent)."""
        now = self.clock.now()
        for name, (description, permissions) in SYSTEM_ROLES.items():
            await self.store.add(
                RoleRecord(new_id(), name, description, permissions, True, now, now)
            )

    async def get(self, role_id: str) -> RoleRecord:
        """A role, or NOT_FOUND."""
        found = await self.store.get(role_id)
        if found is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, f"role {role_id} not found")
        return found

    async def holders(self, role_id: str) -> int:
        """How many users hold a role."""
        return await self.store.users_of(role_id)

    async def page(self, offset: int, limit: int) -> tuple[list[RoleRecord], int]:
        """A page of roles and how many there are."""
        return await self.store.page(offset, limit)

    async def role_of(self, user_id: str) -> str:
        """A user's console role id ("" for none)."""
        return await self.store.role_of(user_id) or ""

    async def create(
        self, name: str, description: str, permissions: list[str], client: Client
    ) -> RoleRecord:
        """A new custom role."""
        now = self.clock.now()
        role = RoleRecord(new_id(), name, description, tuple(permissions), False, now, now)
        if not await self.store.add(role):
            raise name_taken(name)
        await self._audit(
            "create", role.role_id, {"name": name, "permissions": permissions}, client
        )
        return role

    async def update(
        self, role_id: str, description: str, permissions: list[str], client: Client
    ) -> RoleRecord:
        """Changes a custom role's description and (if given) permissions."""
        role = await self._custom(role_id, "change")
        after = replace(
            role,
            description=description,
            permissions=tuple(permissions) if permissions else role.permissions,
            updated_at=self.clock.now(),
        )
        await self.store.replace(after)
        details = {"old": list(role.permissions), "new": list(after.permissions)}
        await self._audit("update", role_id, details, client)
        return after

    async def delete(self, role_id: str, client: Client) -> None:
        """Removes a custom role no one holds (the contract: one still assigned is refused,
        so no admin loses a permission as a side effect)."""
        role = await self._custom(role_id, "delete")
        holders = await self.store.users_of(role_id)
        if holders:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"the role {role.name} is still assigned to {holders} user(s): unassign it first",
            )
        await self.store.delete(role_id)
        await self._audit("delete", role_id, {"name": role.name}, client)

    async def assign(self, user_id: str, role_id: str, client: Client) -> RoleRecord | None:
        """Gives a user a console role ("" takes it away)."""
        role = await self.get(role_id) if role_id else None
        await self.store.assign(user_id, role_id)
        await self._audit("update", role_id, {"user_id": user_id, "assigned": bool(role)}, client)
        return role

    async def _custom(self, role_id: str, what: str) -> RoleRecord:
        role = await self.get(role_id)
        if role.is_system:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE, f"cannot {what} the system role {role.name}"
            )
        return role

    async def _audit(
        self, action: str, role_id: str, details: Mapping[str, object], client: Client
    ) -> None:
        await self.audit.record(
            NewEntry.of(
                client,
                action=action,
                resource="role",
                resource_id=role_id,
                details=dict(details),
                risk_level="high",
            )
        )
