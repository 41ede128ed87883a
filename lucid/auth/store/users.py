"""Users in MongoDB (``users``) and their unique usernames and e-mails (``auth_user_claims``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lucid.auth import policy, schema
from lucid.auth.v1 import auth_pb2
from lucid.common.v1 import access_pb2
from lucid.lib.ids import new_id
from lucid.runtime.datastores import find_page
from lucid.runtime.grouped import GroupedInserts


@dataclass(frozen=True)
class UserRecord:
    """A stored user."""

    user_id: str
    tron_address: str
    role: int
    kyc_status: int
    created_at: datetime
    username: str = ""
    email: str = ""
    suspended: bool = False
    banned: bool = False
    """Banned for good (a banned user is suspended too)."""
    login_attempts: int = 0
    locked_until: datetime | None = None
    last_login: datetime | None = None
    totp_secret: bytes | None = None
    """The TOTP secret, sealed."""
    totp_enabled: bool = False
    totp_last_step: int = 0
    hardware_wallet_enabled: bool = False

    @classmethod
    def of(cls, doc: dict[str, Any]) -> UserRecord:
        """From a ``users`` document."""
        return cls(
            user_id=doc["_id"],
            tron_address=doc["tron_address"],
            role=policy.role_number(doc["role"]),
            kyc_status=policy.kyc_number(doc["kyc_status"]),
            created_at=doc["created_at"],
            username=doc.get("username") or "",
            email=doc.get("email") or "",
            suspended=bool(doc.get("suspended")),
            banned=bool(doc.get("banned")),
            login_attempts=int(doc.get("login_attempts", 0)),
            locked_until=doc.get("locked_until"),
            last_login=doc.get("last_login"),
            totp_secret=bytes(doc["totp_secret"]) if doc.get("totp_secret") else None,
            totp_enabled=bool(doc.get("totp_enabled")),
            totp_last_step=int(doc.get("totp_last_step", 0)),
            hardware_wallet_enabled=bool(doc.get("hardware_wallet_enabled")),
        )

    def locked(self, now: datetime) -> bool:
        """Whether the account is locked after failed sign-ins."""
        return self.locked_until is not None and self.locked_until > now

    def status(self, now: datetime) -> int:
        """The account state: banned, suspended, locked or active."""
        if self.banned:
            return auth_pb2.ACCOUNT_STATUS_BANNED
        if self.suspended:
            return auth_pb2.ACCOUNT_STATUS_SUSPENDED
        if self.locked(now):
            return auth_pb2.ACCOUNT_STATUS_LOCKED
        return auth_pb2.ACCOUNT_STATUS_ACTIVE


ACTIVE = "active"
LOCKED = "locked"
SUSPENDED = "suspended"
BANNED = "banned"


@dataclass(frozen=True)
class UserFilter:
    """Which users a list shows ("" for any): stored role and KYC names, and a status."""

    role: str = ""
    kyc_status: str = ""
    status: str = ""
    """``active``, ``locked`` (until a time), ``suspended`` or ``banned``."""


class UserExistsError(Exception):
    """The TRON address (or a claimed username or e-mail) belongs to another user."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} already taken")
        self.field = field


class UserStore:
    """Reads and writes users."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._users = db[schema.USERS]
        self._claims = db[schema.USER_CLAIMS]
        self._new_users = GroupedInserts(self._users)
        """New users are group-committed: first sign-ins under load share inserts."""

    async def get(self, user_id: str) -> UserRecord | None:
        """A user by id."""
        doc = await self._users.find_one({"_id": user_id})
        return UserRecord.of(doc) if doc else None

    async def by_address(self, tron_address: str) -> UserRecord | None:
        """A user by TRON address."""
        doc = await self._users.find_one({"tron_address": tron_address})
        return UserRecord.of(doc) if doc else None

    async def any_with_role(self, role: str) -> bool:
        """Whether some user holds this (stored) role."""
        return await self._users.find_one({"role": role}, {"_id": 1}) is not None

    async def by_email(self, email: str) -> UserRecord | None:
        """A user by (lower-case) e-mail."""
        doc = await self._users.find_one({"email": email})
        return UserRecord.of(doc) if doc else None

    async def create(
        self,
        tron_address: str,
        now: datetime,
        *,
        email: str = "",
        username: str = "",
        last_login: datetime | None = None,
        role: int = access_pb2.ROLE_USER,
    ) -> UserRecord:
        """A new user (``role``, KYC none); raises ``UserExistsError``."""
        user_id = new_id()
        claimed: list[tuple[str, str]] = []
        try:
            for kind, value in (("email", email), ("username", username)):
                if value:
                    if not await self.claim(kind, value, user_id):
                        raise UserExistsError(kind)
                    claimed.append((kind, value))
            doc: dict[str, Any] = {
                "_id": user_id,
                "tron_address": tron_address,
                "role": policy.role_name(role),
                "kyc_status": policy.kyc_name(access_pb2.KYC_STATUS_NONE),
                "created_at": now,
                "updated_at": now,
                "login_attempts": 0,
                "locked_until": None,
                "suspended": False,
                "last_login": last_login,
            }
            if email:
                doc["email"] = email
            if username:
                doc["username"] = username
            try:
                await self._new_users.insert(doc)
            except DuplicateKeyError:
                raise UserExistsError("tron_address") from None
        except UserExistsError:
            for kind, value in claimed:
                await self.release(kind, value, user_id)
            raise
        return UserRecord.of(doc)

    async def _update(self, user_id: str, update: dict[str, Any]) -> UserRecord | None:
        doc = await self._users.find_one_and_update(
            {"_id": user_id}, update, return_document=ReturnDocument.AFTER
        )
        return UserRecord.of(doc) if doc else None

    async def set_fields(self, user_id: str, fields: dict[str, Any]) -> UserRecord | None:
        """Sets fields of a user; None when there is no such user."""
        return await self._update(user_id, {"$set": fields})

    async def record_failure(
        self, user_id: str, now: datetime, *, max_failures: int, lockout_until: datetime
    ) -> UserRecord | None:
        """Counts a failed sign-in; the ``max_failures``-th locks the account."""
        user = await self._update(
            user_id, {"$inc": {"login_attempts": 1}, "$set": {"updated_at": now}}
        )
        if user is not None and user.login_attempts >= max_failures:
            user = await self._update(
                user_id, {"$set": {"locked_until": lockout_until, "login_attempts": 0}}
            )
        return user

    async def record_login(self, user_id: str, now: datetime) -> UserRecord | None:
        """A successful sign-in: failures forgotten, lock lifted, time kept."""
        return await self.set_fields(
            user_id,
            {"login_attempts": 0, "locked_until": None, "last_login": now, "updated_at": now},
        )

    async def use_totp_step(self, user_id: str, step: int) -> bool:
        """Marks a TOTP time step used; False if it (or a later one) was used already."""
        result = await self._users.update_one(
            {"_id": user_id, "totp_last_step": {"$lt": step}}, {"$set": {"totp_last_step": step}}
        )
        return result.modified_count == 1

    async def page(
        self, where: UserFilter, now: datetime, *, offset: int, limit: int
    ) -> tuple[list[UserRecord], int]:
        """A page of users matching ``where`` at ``now``, oldest first, and how many match."""
        query: dict[str, Any] = {}
        if where.role:
            query["role"] = where.role
        if where.kyc_status:
            query["kyc_status"] = where.kyc_status
        if where.status == BANNED:
            query["banned"] = True
        elif where.status == SUSPENDED:
            query.update({"suspended": True, "banned": {"$ne": True}})
        elif where.status == LOCKED:
            query.update({"suspended": False, "locked_until": {"$gt": now}})
        elif where.status == ACTIVE:
            query["suspended"] = False
            query["$or"] = [{"locked_until": None}, {"locked_until": {"$lte": now}}]
        docs, total = await find_page(
            self._users,
            query,
            [("created_at", ASCENDING), ("_id", ASCENDING)],
            offset=offset,
            limit=limit,
        )
        return [UserRecord.of(doc) for doc in docs], total

    async def claim(self, kind: str, value: str, user_id: str) -> bool:
        """Claims a unique value (``email``/``username``) for a user; False if another has it."""
        key = f"{kind}:{value.lower()}"
        try:
            await self._claims.insert_one({"_id": key, "user_id": user_id})
        except DuplicateKeyError:
            doc = await self._claims.find_one({"_id": key})
            return bool(doc and doc.get("user_id") == user_id)
        return True

    async def release(self, kind: str, value: str, user_id: str) -> None:
        """Gives a claimed value back (only the claimer can)."""
        await self._claims.delete_one({"_id": f"{kind}:{value.lower()}", "user_id": user_id})
