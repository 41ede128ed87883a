"""Issuing Lucid tokens: EdDSA JWTs in the format ``lucid.runtime.tokens`` verifies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from lucid.auth.keystore import SigningKeyStore
from lucid.lib.clock import Clock
from lucid.runtime.tokens import (
    ACCESS,
    ACCESS_TTL_S,
    ALGORITHM,
    AUDIENCE,
    ISSUER,
    REFRESH,
    REFRESH_TTL_S,
    kyc_claim,
    role_claim,
)


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and the facts needed to revoke it."""

    token: str
    jti: str
    expires_at: float


class TokenIssuer:
    """Signs access and refresh tokens with the store's current key."""

    def __init__(self, keys: SigningKeyStore, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    async def issue(
        self,
        *,
        user_id: str,
        role: int,
        kyc_status: int,
        session_id: str,
        token_type: str = ACCESS,
    ) -> IssuedToken:
        """A token of ``token_type`` for a user's login session."""
        key = await self._keys.current()
        now = int(self._clock.timestamp())
        lifetime = ACCESS_TTL_S if token_type == ACCESS else REFRESH_TTL_S
        if token_type not in (ACCESS, REFRESH):
            raise ValueError(f"unknown token type {token_type!r}")
        jti = str(uuid.uuid4())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user_id,
            "sid": session_id,
            "jti": jti,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "token_type": token_type,
            "role": role_claim(role),
            "kyc": kyc_claim(kyc_status),
        }
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
        return IssuedToken(token=token, jti=jti, expires_at=float(claims["exp"]))
