"""Verifying Lucid access tokens locally: EdDSA JWTs checked against the auth JWKS.

Every server verifies tokens itself (no call to auth per request): the public
keys come from the auth cluster's ``GetJwks`` (or, inside auth, from its key
store), are cached for ``jwks_refresh_s`` and fetched again early when a token
names an unknown ``kid``. A verified token is then checked against the revocation
list auth keeps in Redis (logout, session revocation) and kept until it expires:
while revocations are pushed to the server, a token seen before costs a dict lookup,
no signature check and no round trip. The token format is declared here once and
used by auth's issuer too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock, SystemClock
from lucid.runtime.context import UserClaims
from lucid.runtime.errors import ErrorCode, LucidError

ISSUER = "lucid-auth"
AUDIENCE = "lucid"
ALGORITHM = "EdDSA"
ACCESS = "access"
REFRESH = "refresh"
ACCESS_TTL_S = 15 * 60
REFRESH_TTL_S = 7 * 24 * 3600
LEEWAY_S = 5
MIN_REFETCH_INTERVAL_S = 5.0
VERIFIED_CACHE_SIZE = 10_000

REVOKED_JTI_KEY = "lucid:auth:blacklist:{jti}"
"""Redis key auth sets (TTL = the token's remaining life) when a token is revoked."""
REVOKED_SESSION_KEY = "lucid:auth:revoked-session:{sid}"
"""Redis key auth sets when a whole login session is revoked."""

JwkDict = Mapping[str, str]


class KeySource(Protocol):
    """Where verification keys come from (auth's store, or its GetJwks rpc)."""

    async def fetch(self) -> Sequence[JwkDict]:
        """The JWKS keys currently valid."""
        ...


class RevocationList(Protocol):
    """Says whether a token or its login session has been revoked
    (``lucid.runtime.revocations`` has the one auth keeps in Redis)."""

    async def is_revoked(self, jti: str, session_id: str) -> bool:
        """True when either is on the list (may ask the store)."""
        ...

    def epoch(self) -> int | None:
        """While revocations are pushed: a number that changes whenever some may have
        been missed; ``None`` when they are not pushed (then every call asks)."""
        ...

    def heard(self, jti: str, session_id: str) -> bool:
        """Whether a revocation of either was pushed (no store round trip)."""
        ...


def public_key_of(jwk: JwkDict) -> Ed25519PublicKey:
    """The Ed25519 key of an OKP JWK."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("not an Ed25519 JWK")
    key = jwt.PyJWK(dict(jwk), algorithm=ALGORITHM).key
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 key")
    return key


_ROLES = {
    name.removeprefix("ROLE_").lower(): number for name, number in access_pb2.Role.items() if number
}
_KYC = {
    name.removeprefix("KYC_STATUS_").lower(): number
    for name, number in access_pb2.KycStatus.items()
    if number
}


def role_claim(role: int) -> str:
    """``ROLE_NODE_OPERATOR`` → ``node_operator`` (the token's ``role`` claim)."""
    return access_pb2.Role.Name(role).removeprefix("ROLE_").lower()  # type: ignore[arg-type]


def kyc_claim(kyc: int) -> str:
    """``KYC_STATUS_VERIFIED`` → ``verified`` (the token's ``kyc`` claim)."""
    return access_pb2.KycStatus.Name(kyc).removeprefix("KYC_STATUS_").lower()  # type: ignore[arg-type]


class TokenVerifier:
    """Verifies access tokens with cached keys."""

    def __init__(
        self,
        source: KeySource,
        *,
        revocations: RevocationList | None,
        clock: Clock | None = None,
        refresh_s: float = 300.0,
    ) -> None:
        self._source = source
        self._revocations = revocations
        self._clock = clock or SystemClock()
        self._refresh_s = refresh_s
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = -1e9
        self._lock = asyncio.Lock()
        self._verified: dict[str, tuple[UserClaims, int | None]] = {}

    async def _load(self, *, force: bool) -> None:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age < (MIN_REFETCH_INTERVAL_S if force else self._refresh_s):
                return
            keys = {}
            for jwk in await self._source.fetch():
                try:
                    keys[jwk["kid"]] = public_key_of(jwk)
                except (KeyError, ValueError, jwt.PyJWKError):
                    continue
            self._keys = keys
            self._fetched_at = time.monotonic()

    async def _key(self, kid: str) -> Ed25519PublicKey:
        await self._load(force=False)
        if kid not in self._keys:
            await self._load(force=True)
        try:
            return self._keys[kid]
        except KeyError:
            raise _invalid("token signed by an unknown key") from None

    async def decode(self, token: str, *, token_type: str) -> dict[str, Any]:
        """The verified claims of a token of ``token_type``; raises ``LucidError``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise _invalid("token algorithm not accepted")
        key = await self._key(str(header.get("kid", "")))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options={
                    "require": ["exp", "iat", "sub", "jti", "iss", "aud"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidTokenError:
            raise _invalid("token signature or claims invalid") from None
        now = self._clock.timestamp()
        if float(claims["exp"]) + LEEWAY_S <= now:
            raise LucidError(ErrorCode.ERROR_CODE_TOKEN_EXPIRED, "token expired")
        if float(claims["iat"]) - LEEWAY_S > now:
            raise _invalid("token issued in the future")
        if claims.get("token_type") != token_type:
            raise _invalid(f"not an {token_type} token")
        if self._revocations and await self._revocations.is_revoked(
            str(claims["jti"]), str(claims.get("sid", ""))
        ):
            raise LucidError(ErrorCode.ERROR_CODE_TOKEN_REVOKED, "token revoked")
        return claims

    def kept(self, token: str) -> UserClaims | None:
        """The subject of a token already verified, when that needs no wait: unexpired, and
        no revocation of it heard while they are pushed (in the epoch of its last check).
        ``None`` otherwise: ``verify`` then decides (and raises if it must)."""
        cached = self._verified.get(token)
        if cached is None:
            return None
        user, checked_in = cached
        if user.expires_at + LEEWAY_S <= self._clock.timestamp():
            return None
        revocations = self._revocations
        if revocations is None:
            return user
        epoch = revocations.epoch()
        if epoch is None or epoch != checked_in or revocations.heard(user.jti, user.session_id):
            return None
        return user

    async def verify(self, token: str) -> UserClaims:
        """The subject of a valid, unrevoked access token.

        A token whose signature was already checked is taken from a bounded cache;
        its expiry is checked on every call, its revocation by what was pushed while
        the revocation epoch stays the one of its last store check (else asked again).
        """
        kept = self.kept(token)
        if kept is not None:
            return kept
        revocations = self._revocations
        cached = self._verified.get(token)
        if cached is not None:  # kept no more: say why, or check the store again
            user, checked_in = cached
            if user.expires_at + LEEWAY_S <= self._clock.timestamp():
                self._verified.pop(token, None)
                raise LucidError(ErrorCode.ERROR_CODE_TOKEN_EXPIRED, "token expired")
            if revocations is None:  # (``kept`` returned it: unexpired, nothing pushed)
                return user
            epoch = revocations.epoch()
            if epoch is not None and epoch == checked_in:  # not kept: a revocation was heard
                raise LucidError(ErrorCode.ERROR_CODE_TOKEN_REVOKED, "token revoked")
            if await revocations.is_revoked(user.jti, user.session_id):
                raise LucidError(ErrorCode.ERROR_CODE_TOKEN_REVOKED, "token revoked")
            self._verified[token] = (user, epoch)
            return user
        epoch = revocations.epoch() if revocations else None  # read before the store check
        claims = await self.decode(token, token_type=ACCESS)
        role = _ROLES.get(str(claims.get("role")))
        if role is None:
            raise _invalid("token carries no known role")
        user = UserClaims(
            user_id=str(claims["sub"]),
            role=role,
            kyc_status=_KYC.get(str(claims.get("kyc", "none")), access_pb2.KYC_STATUS_NONE),
            session_id=str(claims.get("sid", "")),
            jti=str(claims["jti"]),
            expires_at=float(claims["exp"]),
        )
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (user, epoch)
        return user


def _invalid(message: str) -> LucidError:
    return LucidError(ErrorCode.ERROR_CODE_TOKEN_INVALID, message)


class CallbackKeySource:
    """A key source from a coroutine function (auth's own store, tests)."""

    def __init__(self, fetch: Callable[[], Awaitable[Sequence[JwkDict]]]) -> None:
        self._fetch = fetch

    async def fetch(self) -> Sequence[JwkDict]:
        return await self._fetch()
