"""Login sessions and their tokens: open (with the per-role limit), refresh with rotation
and reuse detection, logout, revoke.

A login session is one sign-in. It holds one current refresh token (its ``jti``
in the record); refreshing swaps it for a new one with a conditional update, so a
refresh token works once, and extends the session to the new token's 7 days. A
rotated refresh token presented again means it leaked: the whole session is
revoked (DECISIONS "Cryptography"). The per-role limit on concurrent sessions is
kept atomically in Redis (``lucid:auth:user-sessions:{user_id}``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from lucid.auth.policy import REFRESH_LIMIT, limits_of
from lucid.auth.store.cache import TokenBlacklist
from lucid.auth.store.login_sessions import SessionRecord, SessionStore
from lucid.auth.store.users import UserRecord, UserStore
from lucid.auth.tokens import IssuedToken, TokenIssuer
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.context import Principal, UserClaims
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.limits import RateLimiter
from lucid.runtime.tokens import ACCESS, REFRESH, REFRESH_TTL_S, TokenVerifier

REVOKED_LOGOUT = "logout"
REVOKED_BY_USER = "revoked"
REVOKED_REUSE = "refresh_token_reuse"
REVOKED_ACCOUNT = "account_changed"


def token_hash(token: str) -> str:
    """Tokens are stored only as SHA-256 hex (spec 09 §5)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Tokens:
    """A new access and refresh token of a login session."""

    access: IssuedToken
    refresh: IssuedToken
    session_id: str


class LoginSessions:
    """Opens, refreshes and revokes login sessions."""

    def __init__(
        self,
        *,
        store: SessionStore,
        users: UserStore,
        issuer: TokenIssuer,
        refresh_verifier: TokenVerifier,
        blacklist: TokenBlacklist,
        limits: RateLimiter,
        clock: Clock,
    ) -> None:
        self.store = store
        self._users = users
        self._issuer = issuer
        self._verifier = refresh_verifier
        self._blacklist = blacklist
        self._limits = limits
        self._clock = clock

    async def _issue(self, user: UserRecord, session_id: str) -> Tokens:
        pair = [
            await self._issuer.issue(
                user_id=user.user_id,
                role=user.role,
                kyc_status=user.kyc_status,
                session_id=session_id,
                token_type=kind,
            )
            for kind in (ACCESS, REFRESH)
        ]
        return Tokens(pair[0], pair[1], session_id)

    async def open(
        self, user: UserRecord, *, ip: str, user_agent: str, hardware_wallet: str = ""
    ) -> Tokens:
        """A new login session with its tokens, within the role's concurrent-session limit."""
        now = self._clock.now()
        limit = limits_of(user.role).max_concurrent_sessions
        session_id = new_id()
        expires_at = now + timedelta(seconds=REFRESH_TTL_S)
        if not await self.store.reserve(
            user.user_id, session_id, limit=limit, now=now, expires_at=expires_at
        ):
            raise LucidError(
                ErrorCode.ERROR_CODE_CONCURRENCY_LIMIT,
                f"at most {limit} concurrent login sessions for this role; sign out of one first",
                metadata={"max_concurrent_sessions": str(limit)},
            )
        try:
            tokens = await self._issue(user, session_id)
            record = SessionRecord(
                session_id=session_id,
                user_id=user.user_id,
                created_at=now,
                last_activity=now,
                expires_at=expires_at,
                refresh_jti=tokens.refresh.jti,
                ip_address=ip,
                user_agent=user_agent,
                hardware_wallet=hardware_wallet,
            )
            await self.store.insert(
                record,
                refresh_hash=token_hash(tokens.refresh.token),
                access_hash=token_hash(tokens.access.token),
                now=now,
            )
        except BaseException:
            await self.store.release(user.user_id, [session_id])
            raise
        return tokens

    async def refresh(self, refresh_token: str) -> tuple[Tokens, UserRecord]:
        """A new pair for a refresh token; the old one is spent."""
        try:
            claims = await self._verifier.decode(refresh_token, token_type=REFRESH)
        except LucidError as exc:
            if exc.code == ErrorCode.ERROR_CODE_TOKEN_EXPIRED:
                raise
            raise LucidError(
                ErrorCode.ERROR_CODE_REFRESH_TOKEN_INVALID, f"refresh token refused: {exc.message}"
            ) from None
        session_id, jti = str(claims.get("sid", "")), str(claims["jti"])
        await self._limits.enforce(REFRESH_LIMIT, session_id)
        now = self._clock.now()
        session = await self.store.get(session_id)
        if session is None or session.revoked or session.expires_at <= now:
            raise LucidError(
                ErrorCode.ERROR_CODE_REFRESH_TOKEN_INVALID,
                "the login session is revoked, expired or gone",
            )
        user = await self._users.get(session.user_id)
        if user is None or user.suspended:
            await self.revoke([session_id], REVOKED_ACCOUNT)
            raise LucidError(ErrorCode.ERROR_CODE_PERMISSION_DENIED, "the account is suspended")
        tokens = await self._issue(user, session_id)
        rotated = await self.store.rotate(
            session_id,
            old_jti=jti,
            new_jti=tokens.refresh.jti,
            refresh_hash=token_hash(tokens.refresh.token),
            access_hash=token_hash(tokens.access.token),
            now=now,
            expires_at=now + timedelta(seconds=REFRESH_TTL_S),
        )
        if rotated is None:
            await self.revoke([session_id], REVOKED_REUSE)
            raise LucidError(
                ErrorCode.ERROR_CODE_REFRESH_TOKEN_INVALID,
                "refresh token already used: the login session is revoked",
            )
        await self._blacklist.add(jti, float(claims["exp"]) - self._clock.timestamp(), "rotated")
        return tokens, user

    async def revoke(self, session_ids: list[str], reason: str) -> list[str]:
        """Revokes sessions everywhere; returns those that were live."""
        return await self.store.revoke(session_ids, self._clock.now(), reason)

    async def list_active(
        self, caller: Principal, user_id: str, *, offset: int, limit: int
    ) -> tuple[list[SessionRecord], int]:
        """A page of a user's active sessions: one's own, or anyone's for admins."""
        own = caller.user.user_id if caller.user else ""
        if user_id != own and not caller.is_admin:
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED, "only admins list others' sessions"
            )
        return await self.store.page_active(user_id, self._clock.now(), offset=offset, limit=limit)

    async def revoke_one(self, caller: Principal, session_id: str) -> SessionRecord:
        """Revokes one of the caller's sessions (anyone's for admins); others look absent."""
        record = await self.store.get(session_id)
        own = caller.user.user_id if caller.user else ""
        if record is None or (record.user_id != own and not caller.is_admin):
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "login session not found")
        await self.revoke([record.session_id], REVOKED_BY_USER)
        return await self.store.get(session_id) or record

    async def revoke_all(self, user_id: str, reason: str) -> list[str]:
        """Revokes every active session of a user."""
        ids = await self.store.active_ids(user_id, self._clock.now())
        revoked = await self.revoke(ids, reason)
        await self.store.release(user_id, ids)
        return revoked

    async def logout(self, user: UserClaims, *, everywhere: bool) -> int:
        """Blacklists the presented access token and revokes its session (or all)."""
        await self._blacklist.add(user.jti, user.expires_at - self._clock.timestamp(), "logout")
        if everywhere:
            revoked = await self.revoke_all(user.user_id, REVOKED_LOGOUT)
            if user.session_id and user.session_id not in revoked:
                revoked += await self.revoke([user.session_id], REVOKED_LOGOUT)
            return len(revoked)
        if not user.session_id:
            return 0
        return len(await self.revoke([user.session_id], REVOKED_LOGOUT))
