"""Console roles and their assignments to users."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.admin.schema import ASSIGNMENTS, ROLES
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError


@dataclass(frozen=True)
class RoleRecord:
    """A console role; permissions are stored names (``sessions_terminate``)."""

    role_id: str
    name: str
    description: str
    permissions: tuple[str, ...]
    is_system: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, doc: dict[str, Any]) -> RoleRecord:
        """The record of a stored document."""
        return cls(
            role_id=doc["_id"],
            name=doc["name"],
            description=doc["description"],
            permissions=tuple(doc["permissions"]),
            is_system=doc["is_system"],
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
        )

    def document(self) -> dict[str, Any]:
        """The document to store."""
        return {
            "_id": self.role_id,
            "name": self.name,
            "description": self.description,
            "permissions": list(self.permissions),
            "is_system": self.is_system,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _unavailable(exc: PyMongoError) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"roles: {exc}")


class RoleStore:
    """``admin_console_roles`` and ``admin_console_assignments``."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.roles = db[ROLES]
        self.assignments = db[ASSIGNMENTS]

    async def add(self, role: RoleRecord) -> bool:
        """Stores a new role; False if the name is taken."""
        try:
            await self.roles.insert_one(role.document())
        except DuplicateKeyError:
            return False
        except PyMongoError as exc:
            raise _unavailable(exc) from exc
        return True

    async def get(self, role_id: str) -> RoleRecord | None:
        """A role by id."""
        try:
            doc = await self.roles.find_one({"_id": role_id})
        except PyMongoError as exc:
            raise _unavailable(exc) from exc
        return RoleRecord.of(doc) if doc else None

    async def by_name(self, name: str) -> RoleRecord | None:
        """A role by name."""
        try:
            doc = await self.roles.find_one({"name": name})
        except PyMongoError as exc:
            raise _unavailable(exc) from exc
        return RoleRecord.of(doc) if doc else None

    async def role_of(self, user_id: str) -> str | None:
        """The id of the role assigned to a user, if any."""
        try:
            doc = await self.assignments.find_one({"_id": user_id})
        except PyMongoError as exc:
            raise _unavailable(exc) from exc
        return str(doc["role_id"]) if doc else None

    async def page(self, offset: int, limit: int) -> tuple[list[RoleRecord], int]:
        """Roles by name, and how many there are."""
        try:
            total = await self.roles.count_documents({})
            cursor = self.roles.find({}).sort([("name", ASCENDING)]).skip(offset).limit(limit)
            return [RoleRecord.of(d) async for d in cursor], total
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def replace(self, role: RoleRecord) -> None:
        """Saves a changed role."""
        try:
            await self.roles.replace_one({"_id": role.role_id}, role.document())
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def delete(self, role_id: str) -> None:
        """Removes a role and its assignments."""
        try:
            await self.assignments.delete_many({"role_id": role_id})
            await self.roles.delete_one({"_id": role_id})
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def users_of(self, role_id: str) -> int:
        """How many users hold a role."""
        try:
            return await self.assignments.count_documents({"role_id": role_id})
        except PyMongoError as exc:
            raise _unavailable(exc) from exc

    async def assign(self, user_id: str, role_id: str) -> None:
        """Gives a user a role ("" takes it away)."""
        try:
            if role_id:
                await self.assignments.replace_one(
                    {"_id": user_id}, {"role_id": role_id}, upsert=True
                )
            else:
                await self.assignments.delete_one({"_id": user_id})
        except PyMongoError as exc:
            raise _unavailable(exc) from exc


def name_taken(name: str) -> LucidError:
    """The error of a duplicate role name."""
    return LucidError(
        ErrorCode.ERROR_CODE_ALREADY_EXISTS,
        f"a role named {name} exists",
        field_violations=[FieldViolation("name", "already taken")],
    )
