"""Accounts: profiles, roles, KYC, suspension, permission checks and recording-session
ownership.

Tokens carry the role and KYC status they were issued with. When an administrator
takes permissions away (a lower role, a lapsed KYC, a suspension) the user's login
sessions are revoked, so no token keeps the old rights for its remaining minutes.
"""

from __future__ import annotations

from lucid.auth import policy
from lucid.auth.login_sessions import REVOKED_ACCOUNT, LoginSessions
from lucid.auth.store.ownership import Ownership, OwnershipStore
from lucid.auth.store.users import UserExistsError, UserFilter, UserRecord, UserStore
from lucid.auth.v1 import auth_pb2
from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock
from lucid.runtime.audit import Event
from lucid.runtime.context import Principal
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError
from lucid.runtime.events import EventPublisher
from lucid.runtime.identity import OPERATOR


def _taken(field: str) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_ALREADY_EXISTS,
        f"this {field} belongs to another user",
        field_violations=[FieldViolation(field, "already taken")],
    )


class Accounts:
    """What administrators and users change on accounts."""

    def __init__(
        self,
        users: UserStore,
        sessions: LoginSessions,
        ownership: OwnershipStore,
        clock: Clock,
        events: EventPublisher | None = None,
    ) -> None:
        self.users = users
        self.sessions = sessions
        self.ownership = ownership
        self._clock = clock
        self._events = events

    def _publish(self, name: str, caller: Principal, user: UserRecord) -> None:
        """``user.*`` events (admin's audit log reads them): who changed whom, to what."""
        if self._events is None:
            return
        self._events.emit(
            name,
            {
                "user_id": user.user_id,
                "tron_address": user.tron_address,
                "role": policy.role_name(user.role),
                "status": auth_pb2.AccountStatus.Name(user.status(self._clock.now()))  # type: ignore[arg-type]
                .removeprefix("ACCOUNT_STATUS_")
                .lower(),
                "by_user_id": caller.user.user_id if caller.user else "",
                "by": caller.peer.name,
            },
        )

    async def get(self, user_id: str) -> UserRecord:
        """A user, or NOT_FOUND."""
        user = await self.users.get(user_id)
        if user is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "user not found")
        return user

    async def read(self, caller: Principal, user_id: str) -> UserRecord:
        """A user as ``caller`` may see it: one's own, or anyone's for admins."""
        if caller.user is not None and caller.user.user_id != user_id and not caller.is_admin:
            raise LucidError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, "only admins read others")
        return await self.get(user_id)

    async def permission_of(
        self, caller: Principal, user_id: str, permission: int
    ) -> tuple[bool, str]:
        """``check_permission`` for ``user_id`` (the caller's own if empty; others' for admins)."""
        own = caller.user.user_id if caller.user else ""
        user_id = user_id or own
        if not user_id:
            raise LucidError(ErrorCode.ERROR_CODE_MISSING_FIELD, "user_id is required")
        if caller.user is not None and user_id != own and not caller.is_admin:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED, "only admins check others' permissions"
            )
        return await self.check_permission(user_id, permission)

    async def list_users(
        self, where: UserFilter, *, offset: int, limit: int
    ) -> tuple[list[UserRecord], int]:
        """A page of the users matching ``where`` (the rpc's access rule admits admins only)."""
        return await self.users.page(where, self._clock.now(), offset=offset, limit=limit)

    async def update_profile(self, user_id: str, *, username: str, email: str) -> UserRecord:
        """Sets a new username and/or e-mail, each unique."""
        user = await self.get(user_id)
        changes: dict[str, object] = {}
        released: list[tuple[str, str]] = []
        for field, value, old in (
            ("username", username, user.username),
            ("email", email.lower(), user.email),
        ):
            if not value or value.lower() == old.lower():
                continue
            if not await self.users.claim(field, value, user_id):
                raise _taken(field)
            changes[field] = value
            if old:
                released.append((field, old))
        if not changes:
            return user
        changes["updated_at"] = self._clock.now()
        updated = await self.users.set_fields(user_id, changes)
        for field, old in released:
            await self.users.release(field, old, user_id)
        return updated or user

    async def create_user(
        self,
        caller: Principal,
        tron_address: str,
        *,
        username: str,
        email: str,
        role: int,
        event: Event,
    ) -> UserRecord:
        """An administrator's new user for a TRON address, at most at the caller's role;
        the address, username and e-mail must be free (nothing is stored otherwise)."""
        event.tron_address, event.resource = tron_address, f"role:{policy.role_name(role)}"
        caller_role = caller.user.role if caller.user else 0
        if not policy.may_grant(caller_role, access_pb2.ROLE_USER, role):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "you can create users at most at your own role",
                field_violations=[FieldViolation("role", "above the caller's role")],
            )
        try:
            user = await self.users.create(
                tron_address,
                self._clock.now(),
                email=email.lower(),
                username=username,
                role=role,
            )
        except UserExistsError as exc:
            raise _taken(exc.field) from None
        event.user_id = user.user_id
        self._publish("user.created", caller, user)
        return user

    async def set_profile(
        self, caller: Principal, user_id: str, *, username: str, email: str, event: Event
    ) -> UserRecord:
        """An administrator's change of another user's username and/or e-mail."""
        event.user_id, event.resource = user_id, "profile"
        self._may_manage(caller, await self.get(user_id))
        return await self.update_profile(user_id, username=username, email=email)

    def _may_manage(self, caller: Principal, target: UserRecord) -> None:
        """An administrator acts only on users at or below its own level."""
        if caller.user is not None and target.role > caller.user.role:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "you cannot change a user above your own role",
            )

    async def _update(self, before: UserRecord, fields: dict[str, object]) -> UserRecord:
        """Sets fields; revokes the user's sessions when that takes permissions away."""
        after = await self.users.set_fields(
            before.user_id, {**fields, "updated_at": self._clock.now()}
        )
        if after is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "user not found")
        if policy.loses_permissions(
            (before.role, before.kyc_status), (after.role, after.kyc_status)
        ):
            await self.sessions.revoke_all(after.user_id, REVOKED_ACCOUNT)
        return after

    async def assign_role(
        self, caller: Principal, user_id: str, role: int, event: Event
    ) -> UserRecord:
        """Grants a role, at most the caller's own level."""
        event.user_id, event.resource = user_id, f"role:{policy.role_name(role)}"
        target = await self.get(user_id)
        caller_role = caller.user.role if caller.user else 0
        if not policy.may_grant(caller_role, target.role, role):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "you can grant at most your own role, to users at most at your level",
                metadata={"caller_role": policy.role_name(caller_role) if caller_role else ""},
            )
        updated = await self._update(target, {"role": policy.role_name(role)})
        self._publish("user.role-changed", caller, updated)
        return updated

    async def bootstrap_role(
        self, caller: Principal, tron_address: str, role: int, event: Event
    ) -> UserRecord:
        """The operator's grant (``lucid admin grant``): only while no super admin exists."""
        event.resource = f"role:{policy.role_name(role)}"
        if caller.peer.name != OPERATOR or caller.user is not None:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "only the operator certificate, without a user token, may bootstrap roles",
            )
        if await self.users.any_with_role(policy.role_name(access_pb2.ROLE_SUPER_ADMIN)):
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_ALLOWED,
                "a super admin exists: roles are granted by admins (AssignRole)",
            )
        target = await self.users.by_address(tron_address)
        if target is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_FOUND,
                "no user has this TRON address: sign in once first",
                field_violations=[FieldViolation("tron_address", "no such user")],
            )
        event.user_id = target.user_id
        updated = await self._update(target, {"role": policy.role_name(role)})
        self._publish("user.role-changed", caller, updated)
        return updated

    async def set_kyc(
        self, caller: Principal, user_id: str, kyc_status: int, event: Event
    ) -> UserRecord:
        """Records a KYC decision; the permission matrix's KYC gates follow it."""
        event.user_id, event.resource = user_id, f"kyc:{policy.kyc_name(kyc_status)}"
        target = await self.get(user_id)
        self._may_manage(caller, target)
        return await self._update(target, {"kyc_status": policy.kyc_name(kyc_status)})

    async def set_status(
        self, caller: Principal, user_id: str, status: int, event: Event
    ) -> UserRecord:
        """Suspends or bans (revoking every login session) or reactivates (lifting a
        lock); a ban is final."""
        event.user_id = user_id
        event.resource = f"status:{auth_pb2.AccountStatus.Name(status).lower()}"  # type: ignore[arg-type]
        target = await self.get(user_id)
        self._may_manage(caller, target)
        if caller.user is not None and caller.user.user_id == user_id:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_ALLOWED, "you cannot change your own status")
        if target.banned:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_ALLOWED, "the user is banned; a ban is final")
        if status in (auth_pb2.ACCOUNT_STATUS_SUSPENDED, auth_pb2.ACCOUNT_STATUS_BANNED):
            banned = status == auth_pb2.ACCOUNT_STATUS_BANNED
            updated = await self._update(target, {"suspended": True, "banned": banned})
            await self.sessions.revoke_all(user_id, REVOKED_ACCOUNT)
        else:
            updated = await self._update(
                target, {"suspended": False, "locked_until": None, "login_attempts": 0}
            )
        self._publish("user.status-changed", caller, updated)
        return updated

    async def check_permission(self, user_id: str, permission: int) -> tuple[bool, str]:
        """Whether a user holds a permission now (role, KYC, suspension)."""
        user = await self.get(user_id)
        if user.suspended:
            return False, "suspended"
        reason = policy.why_not(user.role, user.kyc_status, permission)
        return not reason, reason

    async def set_ownership(self, ownership: Ownership) -> None:
        """Records who owns and who may watch a recording session."""
        await self.ownership.put(ownership, self._clock.now())

    async def verify_ownership(self, session_id: str, user_id: str, level: int) -> bool:
        """Owner and participants: any level; observers: the observer level only."""
        record = await self.ownership.get(session_id)
        if record is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no ownership record for the session")
        if user_id == record.owner_user_id or user_id in record.participants:
            return True
        return user_id in record.observers and level == auth_pb2.ACCESS_LEVEL_OBSERVER
