"""The numbers and rules of spec 09 that are not storage: lifetimes, limits, lockout,
role levels, the per-role session limits and the resource view of the permissions.

The permission matrix itself is declared on the ``Permission`` enum and read by
``lucid.runtime.authz``; this module adds what auth alone decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from lucid.common.v1 import access_pb2
from lucid.lib.ratelimit import Policy
from lucid.runtime import authz
from lucid.runtime.limits import Limit
from lucid.runtime.tokens import kyc_claim, role_claim

CHALLENGE_TTL_S = 300
"""A sign-in challenge lives 300 s and is deleted on use."""
MAGIC_LINK_TTL_S = 300
"""A magic link lives 5 min and is single-use."""
TOTP_VALID_WINDOW = 1
"""RFC 6238 codes of the previous, current and next 30 s step are accepted."""
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=30)


CHALLENGE_LIMIT = Limit("challenge", Policy(limit=100, window_s=60.0))
LOGIN_LIMIT = Limit("login", Policy(limit=10, window_s=60.0))
REGISTER_LIMIT = Limit("register", Policy(limit=5, window_s=60.0))
REFRESH_LIMIT = Limit("refresh", Policy(limit=60, window_s=60.0))
MAGIC_LINK_LIMIT = Limit("magic-link", Policy(limit=5, window_s=60.0))
HARDWARE_WALLET_LIMIT = Limit("hardware-wallet", Policy(limit=20, window_s=60.0))


@dataclass(frozen=True)
class RoleLimits:
    """Per-role login-session limits (spec 09 §4); 0 means none."""

    max_concurrent_sessions: int
    idle_timeout_minutes: int
    max_duration_hours: int


ROLE_LIMITS: dict[int, RoleLimits] = {
    access_pb2.ROLE_USER: RoleLimits(5, 30, 24),
    access_pb2.ROLE_NODE_OPERATOR: RoleLimits(10, 60, 48),
    access_pb2.ROLE_ADMIN: RoleLimits(20, 120, 168),
    access_pb2.ROLE_SUPER_ADMIN: RoleLimits(0, 0, 0),
}


def limits_of(role: int) -> RoleLimits:
    """The session limits of a role (a role unknown here gets the user's)."""
    return ROLE_LIMITS.get(role, ROLE_LIMITS[access_pb2.ROLE_USER])


role_name = role_claim
"""``ROLE_NODE_OPERATOR`` → ``node_operator``: users are stored with the token claim's form."""
kyc_name = kyc_claim
"""``KYC_STATUS_VERIFIED`` → ``verified``."""


def role_number(name: str) -> int:
    """``node_operator`` → ``ROLE_NODE_OPERATOR`` (inverse of ``role_name``)."""
    return access_pb2.Role.Value(f"ROLE_{name.upper()}")


def kyc_number(name: str) -> int:
    """``verified`` → ``KYC_STATUS_VERIFIED``."""
    return access_pb2.KycStatus.Value(f"KYC_STATUS_{name.upper()}")


def permissions_of(role: int, kyc_status: int) -> list[int]:
    """The permissions a role holds with its KYC gates applied."""
    return authz.permissions_of(role, kyc_status)


def why_not(role: int, kyc_status: int, permission: int) -> str:
    """``""`` when held, else ``role`` or ``kyc``."""
    if not authz.role_has(role, permission):
        return "role"
    if not authz.kyc_allows(kyc_status, permission):
        return "kyc"
    return ""


def may_grant(caller_role: int, target_current_role: int, new_role: int) -> bool:
    """AssignRole: at most the caller's own level, and never over someone above it."""
    return new_role <= caller_role and target_current_role <= caller_role


def loses_permissions(before: tuple[int, int], after: tuple[int, int]) -> bool:
    """Whether moving from (role, kyc) ``before`` to ``after`` takes any permission away."""
    return not set(permissions_of(*before)) <= set(permissions_of(*after))


CRUD = ("create", "read", "update", "delete")

_RESOURCES: dict[int, dict[str, tuple[str, ...]]] = {
    access_pb2.ROLE_USER: {
        "sessions": ("create", "read", "update"),
        "rdp": ("read",),
        "payments": ("read",),
    },
    access_pb2.ROLE_NODE_OPERATOR: {
        "sessions": ("read",),
        "rdp": ("read",),
        "blockchain": CRUD,
        "payments": ("read",),
    },
    access_pb2.ROLE_ADMIN: {
        "sessions": CRUD,
        "rdp": CRUD,
        "payments": CRUD,
        "admin": CRUD,
        "blockchain": ("read",),
    },
    access_pb2.ROLE_SUPER_ADMIN: {
        "sessions": CRUD,
        "rdp": CRUD,
        "payments": CRUD,
        "admin": CRUD,
        "blockchain": CRUD,
    },
}


def resources_of(role: int) -> dict[str, tuple[str, ...]]:
    """The resource view of spec 09 §4: resource → allowed actions."""
    return _RESOURCES.get(role, _RESOURCES[access_pb2.ROLE_USER])
