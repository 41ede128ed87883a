"""Authorization: the access rule an rpc declares, applied to the caller.

The permission matrix of spec 09 §4 is declared on the ``Permission`` enum (the
lowest role holding each permission and its KYC gate); each rpc declares its
``AccessRule``. This module reads both and decides. Ownership of a resource is
the servicer's business, on top.
"""

from __future__ import annotations

from functools import cache

from lucid.common.v1 import access_pb2
from lucid.runtime.context import Principal, UserClaims
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.identity import EDGE, cluster_enum_name
from lucid.runtime.planes import edge_acts_as_itself

_KYC_OK = {
    access_pb2.KYC_GATE_UNSPECIFIED: None,
    access_pb2.KYC_GATE_PENDING_OR_VERIFIED: {
        access_pb2.KYC_STATUS_PENDING,
        access_pb2.KYC_STATUS_VERIFIED,
    },
    access_pb2.KYC_GATE_VERIFIED: {access_pb2.KYC_STATUS_VERIFIED},
}


@cache
def grants() -> dict[int, access_pb2.PermissionGrant]:
    """Each permission's grant, as declared on the enum."""
    table = {}
    for value in access_pb2.Permission.DESCRIPTOR.values:
        if value.number:
            table[value.number] = value.GetOptions().Extensions[access_pb2.grant]
    return table


def role_has(role: int, permission: int) -> bool:
    """Whether a role holds a permission (KYC aside)."""
    grant = grants().get(permission)
    return bool(grant and grant.min_role and role >= grant.min_role)


def kyc_allows(kyc_status: int, permission: int) -> bool:
    """Whether a KYC status passes a permission's KYC gate."""
    allowed = _KYC_OK[grants()[permission].kyc]
    return allowed is None or kyc_status in allowed


def permissions_of(role: int, kyc_status: int) -> list[int]:
    """Every permission a role holds with its KYC gates applied."""
    return [p for p in grants() if role_has(role, p) and kyc_allows(kyc_status, p)]


def check_user(user: UserClaims, permission: int) -> None:
    """Raises unless the user holds ``permission`` (2004 role, 2012 KYC)."""
    if not permission:
        return
    name = access_pb2.Permission.Name(permission).removeprefix("PERMISSION_").lower()  # type: ignore[arg-type]
    if not role_has(user.role, permission):
        raise LucidError(
            ErrorCode.ERROR_CODE_PERMISSION_DENIED,
            f"permission {name} required",
            metadata={"required_permission": name},
        )
    if not kyc_allows(user.kyc_status, permission):
        raise LucidError(
            ErrorCode.ERROR_CODE_KYC_REQUIRED,
            f"permission {name} needs KYC",
            metadata={"required_permission": name},
        )


def acts_as_service(rule: access_pb2.AccessRule, principal: Principal) -> bool:
    """Whether the caller's service identity alone satisfies the rule: a known identity
    named in ``service_callers``, not relaying for a client, and for the edge only on the
    rpcs it calls for itself (a call through the edge acts for its end user)."""
    peer = principal.peer
    if principal.relayed or not peer.is_known:
        return False
    if cluster_enum_name(peer.name) not in {
        access_pb2.Cluster.Name(c) for c in rule.service_callers
    }:
        return False
    return peer.name != EDGE or edge_acts_as_itself(rule)


def authorize(rule: access_pb2.AccessRule, principal: Principal, method: str) -> None:
    """Applies an rpc's access rule to its caller; raises ``LucidError`` when refused."""
    if rule.public:
        return
    peer = principal.peer
    service_allowed = acts_as_service(rule, principal)
    if rule.service_only:
        if service_allowed:
            return
        who = "a client through the edge" if principal.relayed else peer.name
        raise LucidError(
            ErrorCode.ERROR_CODE_PLANE_POLICY_DENIED,
            f"{method} is for services only; {who} may not call it",
            metadata={"peer": peer.spiffe_id},
        )
    if principal.user is not None:
        check_user(principal.user, rule.permission)
        return
    if service_allowed:
        return
    if peer.is_cluster and not principal.relayed:
        raise LucidError(
            ErrorCode.ERROR_CODE_PLANE_POLICY_DENIED,
            f"service {peer.name} may not call {method}",
            metadata={"peer": peer.spiffe_id},
        )
    raise LucidError(ErrorCode.ERROR_CODE_UNAUTHENTICATED, "sign in first: no access token")
