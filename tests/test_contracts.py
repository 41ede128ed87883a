"""The contracts themselves: every rpc declares who may call it, what it does and which
spec operations it implements; generated code matches the protos."""

from __future__ import annotations

from lucid.common.v1 import access_pb2
from lucid.runtime.authz import grants, permissions_of, role_has
from lucid.runtime.config import CLUSTERS
from lucid.runtime.contracts import catalog
from lucid.runtime.errors import ErrorCode, status_of


def test_every_cluster_has_a_contract() -> None:
    assert catalog().clusters() == sorted(CLUSTERS)


def test_every_rpc_declares_access_kind_and_spec() -> None:
    missing = []
    for info in catalog().methods.values():
        if not info.access.kind:
            missing.append(f"{info.path}: no kind")
        if not info.spec_refs:
            missing.append(f"{info.path}: no Spec line")
        if not info.comment:
            missing.append(f"{info.path}: no doc comment")
    assert not missing, missing


def test_internal_rpcs_name_their_service_callers() -> None:
    """An rpc without a REST route is reachable only service to service."""
    orphans = [
        info.path
        for info in catalog().methods.values()
        if not info.routes
        and not info.access.service_callers
        and not info.access.public
        and not info.access.permission
    ]
    assert not orphans, orphans


def test_reads_are_idempotent() -> None:
    wrong = [
        info.path
        for info in catalog().methods.values()
        if any(r.verb == "GET" for r in info.routes) and not info.idempotent
    ]
    assert not wrong, wrong


def test_chain_never_accepts_wallet_callers() -> None:
    for info in catalog().methods.values():
        if info.cluster in {"blockchain", "payments"}:
            other = "CLUSTER_PAYMENTS" if info.cluster == "blockchain" else "CLUSTER_BLOCKCHAIN"
            callers = {access_pb2.Cluster.Name(c) for c in info.access.service_callers}
            assert other not in callers, info.path


def test_permission_matrix_is_cumulative_with_kyc_gates() -> None:
    user = set(permissions_of(access_pb2.ROLE_USER, access_pb2.KYC_STATUS_NONE))
    operator = set(permissions_of(access_pb2.ROLE_NODE_OPERATOR, access_pb2.KYC_STATUS_VERIFIED))
    admin = set(permissions_of(access_pb2.ROLE_ADMIN, access_pb2.KYC_STATUS_VERIFIED))
    everything = set(permissions_of(access_pb2.ROLE_SUPER_ADMIN, access_pb2.KYC_STATUS_VERIFIED))
    assert user < operator < admin < everything
    assert everything == set(grants())
    assert access_pb2.PERMISSION_CREATE_SESSION in user
    assert access_pb2.PERMISSION_ASSIGN_ROLES not in admin
    pending = set(permissions_of(access_pb2.ROLE_NODE_OPERATOR, access_pb2.KYC_STATUS_PENDING))
    assert access_pb2.PERMISSION_REGISTER_NODE not in pending
    assert access_pb2.PERMISSION_SUBMIT_POOT_VOTES in pending
    assert role_has(access_pb2.ROLE_NODE_OPERATOR, access_pb2.PERMISSION_REGISTER_NODE)


def test_every_error_code_declares_a_status_in_its_range() -> None:
    import grpc

    ranges = {
        1: {grpc.StatusCode.INVALID_ARGUMENT},
        2: {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED},
        3: {grpc.StatusCode.RESOURCE_EXHAUSTED},
    }
    for value in ErrorCode.DESCRIPTOR.values:
        if value.number == 0:
            continue
        status = status_of(value.number)
        assert status in ranges.get(value.number // 1000, set(grpc.StatusCode)), value.name
