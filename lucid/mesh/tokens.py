"""Service JWTs of the mesh (spec 10 §4 "Service JWT"): issuing a cluster's token and
verifying one.

Tokens are RS256, issuer ``lucid.onion``, audience ``lucid-services`` unless the
caller names another, at most 24 h, with a unique ``jti`` and the claims
``service_name``, ``cluster``, ``plane`` and ``permissions`` (``service:read:<cluster>``
plus the plane's: ops ``read:chain`` and ``write:ops``; chain ``write:chain`` and
``read:storage``; wallet ``write:wallet``). The RSA keys are the mesh cluster's own,
sealed at rest in ``mesh_signing_keys`` by the runtime's key store; a token's ``kid``
names its key. A cluster obtains tokens only for itself (super admins for any).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pymongo.asynchronous.collection import AsyncCollection

from lucid.lib.clock import Clock
from lucid.lib.sealing import Sealer
from lucid.mesh import discovery
from lucid.mesh.v1 import identity_pb2
from lucid.runtime.context import Principal
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError
from lucid.runtime.identity import ServiceIdentity, cluster_from_enum, cluster_planes
from lucid.runtime.keystore import SealedKey, SealedKeyStore, UnknownKeyError
from lucid.runtime.planes import known_identity

ALGORITHM = "RS256"
ISSUER = "lucid.onion"
AUDIENCE = "lucid-services"
MAX_TTL_S = 24 * 3600
RSA_BITS = 2048
PURPOSE = "service_token_signing"
CURRENT_KEY_TTL_S = 60.0
CLAIMS = ("iss", "aud", "exp", "iat", "nbf", "jti", "service_name", "cluster", "plane")

PLANE_PERMISSIONS = {
    "ops": ("read:chain", "write:ops"),
    "chain": ("write:chain", "read:storage"),
    "wallet": ("write:wallet",),
}


def permissions_of(cluster: str, plane: str) -> list[str]:
    """The permissions a cluster's token carries."""
    return [f"service:read:{cluster}", *PLANE_PERMISSIONS.get(plane, ())]


def _make() -> tuple[bytes, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    secret = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return secret, public.decode()


@dataclass(frozen=True)
class TokenClaims:
    """The claims of a service token (times in epoch seconds)."""

    service_name: str
    cluster: str
    plane: str
    permissions: list[str]
    jti: str
    issuer: str
    audience: str
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class IssuedServiceToken:
    """A signed token and its claims."""

    token: str
    claims: TokenClaims


@dataclass(frozen=True)
class TokenVerdict:
    """The outcome of verifying a token."""

    failure: int  # a VerifyFailure value; 0 when it verifies
    reason: str = ""
    claims: TokenClaims | None = field(default=None)

    @property
    def valid(self) -> bool:
        """Whether it verifies."""
        return self.failure == identity_pb2.VERIFY_FAILURE_UNSPECIFIED


def _string_list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError("permissions must be a list")
    return value


def _refused(failure: int, reason: str) -> TokenVerdict:
    return TokenVerdict(failure, reason)


class ServiceTokens:
    """Signs and verifies service JWTs with the mesh's sealed RSA keys."""

    def __init__(
        self, collection: AsyncCollection[dict[str, Any]], sealer: Sealer, clock: Clock
    ) -> None:
        self._keys = SealedKeyStore(collection, sealer, clock, current_ttl_s=CURRENT_KEY_TTL_S)
        self._clock = clock

    def _private(self, key: SealedKey) -> rsa.RSAPrivateKey:
        private = serialization.load_der_private_key(key.secret, password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        return private

    async def issue(
        self, cluster: int, audience: str, ttl_seconds: int, caller: Principal
    ) -> IssuedServiceToken:
        """A token for ``cluster`` (the caller's when unspecified)."""
        if not cluster:
            if not caller.peer.is_cluster:
                raise LucidError(
                    ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                    "name the cluster the token is for",
                    field_violations=[
                        FieldViolation("cluster", "required for non-service callers")
                    ],
                )
            name = caller.peer.name
        else:
            name = cluster_from_enum(cluster)
        plane = cluster_planes().get(name, "")
        if not plane or not known_identity(ServiceIdentity(plane, name)):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"{name} is not a cluster of the mesh",
                field_violations=[FieldViolation("cluster", "must be a mesh cluster")],
            )
        if cluster and not discovery.may_act_for(caller, cluster):
            raise LucidError(
                ErrorCode.ERROR_CODE_PERMISSION_DENIED,
                "a service may obtain tokens only for its own cluster",
            )
        key = await self._keys.current(PURPOSE, _make)
        now = int(self._clock.timestamp())
        claims = TokenClaims(
            service_name=name,
            cluster=name,
            plane=plane,
            permissions=permissions_of(name, plane),
            jti=str(uuid.uuid4()),
            issuer=ISSUER,
            audience=audience or AUDIENCE,
            issued_at=float(now),
            expires_at=float(now + (ttl_seconds or MAX_TTL_S)),
        )
        payload = {
            "iss": claims.issuer,
            "aud": claims.audience,
            "sub": f"spiffe://lucid.local/{plane}/{name}",
            "jti": claims.jti,
            "iat": now,
            "nbf": now,
            "exp": int(claims.expires_at),
            "service_name": claims.service_name,
            "cluster": claims.cluster,
            "plane": claims.plane,
            "permissions": claims.permissions,
        }
        token = jwt.encode(
            payload, self._private(key), algorithm=ALGORITHM, headers={"kid": key.key_id}
        )
        return IssuedServiceToken(token, claims)

    async def verify(self, token: str, audience: str) -> TokenVerdict:  # noqa: PLR0911
        """Signature (a current mesh key), issuer, audience, validity period and identity."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return _refused(identity_pb2.VERIFY_FAILURE_MALFORMED, "not a JWT")
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            return _refused(identity_pb2.VERIFY_FAILURE_UNTRUSTED, f"not an {ALGORITHM} mesh token")
        if kid not in {k.key_id for k in await self._keys.published(PURPOSE)}:
            return _refused(identity_pb2.VERIFY_FAILURE_UNTRUSTED, "signed by no mesh key")
        try:
            key = await self._keys.by_id(kid)
        except UnknownKeyError:
            return _refused(identity_pb2.VERIFY_FAILURE_UNTRUSTED, "signed by no mesh key")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._private(key).public_key(),
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                audience=audience or AUDIENCE,
                options={
                    "require": list(CLAIMS),
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            return _refused(identity_pb2.VERIFY_FAILURE_UNTRUSTED, "bad signature")
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError) as exc:
            return _refused(identity_pb2.VERIFY_FAILURE_WRONG_AUDIENCE, str(exc))
        except jwt.PyJWTError as exc:
            return _refused(identity_pb2.VERIFY_FAILURE_MALFORMED, str(exc))
        now = self._clock.timestamp()
        try:
            claims = TokenClaims(
                service_name=str(payload["service_name"]),
                cluster=str(payload["cluster"]),
                plane=str(payload["plane"]),
                permissions=[str(p) for p in _string_list(payload.get("permissions"))],
                jti=str(payload["jti"]),
                issuer=str(payload["iss"]),
                audience=str(payload["aud"]),
                issued_at=float(payload["iat"]),
                expires_at=float(payload["exp"]),
            )
            not_before = float(payload["nbf"])
        except (TypeError, ValueError) as exc:
            return _refused(identity_pb2.VERIFY_FAILURE_MALFORMED, f"bad claim: {exc}")
        if not not_before <= now < claims.expires_at:
            return _refused(identity_pb2.VERIFY_FAILURE_EXPIRED, "outside its validity period")
        if not known_identity(ServiceIdentity(claims.plane, claims.cluster)):
            return _refused(
                identity_pb2.VERIFY_FAILURE_WRONG_IDENTITY,
                f"{claims.cluster} is not a cluster of plane {claims.plane}",
            )
        return TokenVerdict(identity_pb2.VERIFY_FAILURE_UNSPECIFIED, "", claims)
