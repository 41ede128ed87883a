"""The plane policy of DECISIONS, enforced by every server's pipeline over real mTLS
(spec 10 §7 checks 7, 9, 10 and 14 adjusted to DECISIONS)."""

from __future__ import annotations

import logging

import grpc
import pytest

from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.lib.sealing import Sealer
from lucid.runtime import tls
from lucid.runtime.config import Settings
from lucid.runtime.contracts import catalog
from lucid.runtime.identity import ServiceIdentity, identity_for
from lucid.runtime.planes import DEFAULT_DENY, UNKNOWN_IDENTITY, PlanePolicy, callers
from tests.support import Mesh, details

DENIED = "LUCID_ERR_2013"
# What the plane policy and the access rules answer when they refuse a call.
REFUSALS = frozenset({"LUCID_ERR_2001", "LUCID_ERR_2004", DENIED, "LUCID_ERR_2014"})


def admitted(reason: str) -> bool:
    """Whether a call got past the policy and the access rule (to the servicer, which
    may still refuse the empty request, or answer it)."""
    return reason not in REFUSALS


async def _call(mesh: Mesh, cluster: str, identity: str, method: str) -> str:
    """Calls ``method`` (an empty request) on ``cluster`` as ``identity``; the Lucid
    reason, or ``OK``."""
    info = catalog().methods[method]
    request = catalog().message_class(info.input_type)()
    async with mesh.channel(cluster, identity) as channel:
        call = channel.unary_unary(
            method,
            request_serializer=lambda m: m.SerializeToString(),  # type: ignore[attr-defined]
            response_deserializer=catalog().message_class(info.output_type).FromString,
        )
        try:
            await call(request, timeout=10)
        except grpc.aio.AioRpcError as error:
            return details(error).reason
    return "OK"


@pytest.fixture(scope="module")
async def chain_and_wallet(mesh: Mesh) -> Mesh:
    for cluster in ("blockchain", "payments", "storage"):
        await mesh.start(cluster)
    return mesh


async def test_blockchain_and_payments_are_denied_both_ways(chain_and_wallet: Mesh) -> None:
    mesh = chain_and_wallet
    health = "/lucid.payments.v1.PayoutService/GetHealth"
    info = "/lucid.blockchain.v1.BlockchainService/GetChainInfo"
    assert await _call(mesh, "payments", "blockchain", health) == DENIED
    assert await _call(mesh, "blockchain", "payments", info) == DENIED
    # The same public rpcs answer the edge (they have http routes).
    assert await _call(mesh, "payments", "edge", health) == "OK"


async def test_sessions_may_anchor_but_not_write_to_the_chain(chain_and_wallet: Mesh) -> None:
    mesh = chain_and_wallet
    anchor = "/lucid.blockchain.v1.AnchoringService/AnchorSession"
    submit = "/lucid.blockchain.v1.BlockchainService/SubmitTransaction"
    # Past the plane policy and the rpc's service_callers: the servicer is not built here.
    assert admitted(await _call(mesh, "blockchain", "sessions", anchor))
    assert await _call(mesh, "blockchain", "sessions", submit) == DENIED


async def test_nodes_prove_tasks_and_payouts_come_from_nodes_and_admin(
    chain_and_wallet: Mesh,
) -> None:
    mesh = chain_and_wallet
    proof = "/lucid.blockchain.v1.ConsensusService/SubmitTaskProof"
    payout = "/lucid.payments.v1.PayoutService/CreatePayout"
    assert admitted(await _call(mesh, "blockchain", "nodes", proof))
    assert await _call(mesh, "blockchain", "gateway", proof) == DENIED
    for caller in ("nodes", "admin"):
        assert admitted(await _call(mesh, "payments", caller, payout))
    for caller in ("gateway", "sessions", "blockchain"):
        assert await _call(mesh, "payments", caller, payout) == DENIED


async def test_admin_reads_everywhere_but_does_not_write_across_planes(
    chain_and_wallet: Mesh,
) -> None:
    mesh = chain_and_wallet
    read = "/lucid.payments.v1.WalletService/ListWallets"
    write = "/lucid.payments.v1.WalletService/CreateWallet"
    assert admitted(await _call(mesh, "payments", "admin", read))
    assert await _call(mesh, "payments", "admin", write) == DENIED


async def test_everyone_reaches_auth(chain_and_wallet: Mesh) -> None:
    for caller in ("blockchain", "payments", "storage", "edge"):
        async with chain_and_wallet.channel("auth", caller) as channel:
            jwks = await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest())
        assert jwks.keys


async def test_the_edge_reaches_no_service_only_rpc(chain_and_wallet: Mesh) -> None:
    sync = "/lucid.blockchain.v1.ConsensusService/SyncBlocks"  # validator to validator only
    assert catalog().methods[sync].access.service_only
    assert await _call(chain_and_wallet, "blockchain", "edge", sync) == DENIED


@pytest.fixture(scope="module")
def rogue_certificate(settings: Settings) -> str:
    """A certificate from the real CA whose SPIFFE id puts payments in the ops plane."""
    ca = tls.CertificateAuthority.load(settings.certs_dir, Sealer(settings.key_passphrase))
    issued = ca.issue(ServiceIdentity(plane="ops", name="payments"))
    tls.CertPaths.of(settings.certs_dir, "rogue").write(issued)
    return "rogue"


async def test_a_certificate_from_a_wrong_plane_is_refused(
    mesh: Mesh, rogue_certificate: str
) -> None:
    jwks = "/lucid.auth.v1.AuthService/GetJwks"
    async with mesh.channel("auth", rogue_certificate) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = details(caught.value)
    assert info.reason == DENIED
    assert info.metadata["rule"] == UNKNOWN_IDENTITY
    assert info.metadata["peer"] == "spiffe://lucid.local/ops/payments"
    assert jwks in catalog().methods


async def test_every_allow_and_deny_writes_one_audit_record(
    chain_and_wallet: Mesh, caplog: pytest.LogCaptureFixture
) -> None:
    mesh = chain_and_wallet
    health = "/lucid.payments.v1.PayoutService/GetHealth"
    with caplog.at_level(logging.INFO, logger="lucid.audit"):
        await _call(mesh, "payments", "blockchain", health)
        await _call(mesh, "payments", "edge", health)
    records = [r for r in caplog.records if r.name == "lucid.audit" and r.method == health]  # type: ignore[attr-defined]
    assert [(r.decision, r.source) for r in records] == [  # type: ignore[attr-defined]
        ("deny", "spiffe://lucid.local/chain/blockchain"),
        ("allow", "spiffe://lucid.local/edge/edge"),
    ]
    deny, allow = records
    assert deny.levelno == logging.CRITICAL
    assert deny.rule == "chain-never-calls-wallet"  # type: ignore[attr-defined]
    assert allow.rule == "edge-to-client-rpcs"  # type: ignore[attr-defined]
    assert deny.destination == "payments" and deny.destination_plane == "wallet"  # type: ignore[attr-defined]


# -- the table itself, over every rpc of the contracts ----------------------------------


def test_blockchain_and_payments_never_reach_each_other() -> None:
    policy = PlanePolicy()
    for info in catalog().methods.values():
        if info.cluster == "payments":
            assert not policy.decide(identity_for("blockchain"), info).allowed, info.path
        if info.cluster == "blockchain":
            assert not policy.decide(identity_for("payments"), info).allowed, info.path


def test_same_plane_is_allowed_and_other_planes_default_to_deny() -> None:
    policy = PlanePolicy()
    methods = catalog().methods
    sessions_list = methods["/lucid.sessions.v1.SessionService/ListSessions"]
    assert policy.decide(identity_for("rdp"), sessions_list).allowed
    decision = policy.decide(identity_for("storage"), sessions_list)
    assert not decision.allowed and decision.rule == DEFAULT_DENY
    wallet = methods["/lucid.payments.v1.WalletService/CreateWallet"]
    assert not policy.decide(identity_for("sessions"), wallet).allowed


def test_every_identity_reaches_auth_and_mesh() -> None:
    policy = PlanePolicy()
    for info in catalog().methods.values():
        if info.cluster in ("auth", "mesh"):
            for source in callers():
                if info.routes or source.plane != "edge":
                    assert policy.decide(source, info).allowed, (source, info.path)


def test_an_undeclared_kind_counts_as_a_write() -> None:
    policy = PlanePolicy()
    info = catalog().methods["/lucid.payments.v1.WalletService/ListWallets"]
    blank = type(info)(**{**info.__dict__, "access": type(info.access)()})
    assert policy.decide(identity_for("admin"), info).allowed
    assert not PlanePolicy().decide(identity_for("admin"), blank).allowed


# -- behind an Envoy sidecar -----------------------------------------------------------------


def test_forwarded_client_cert_names_the_nearest_hop() -> None:
    xfcc = (
        "By=spiffe://lucid.local/wallet/payments;Hash=ab;URI=spiffe://lucid.local/ops/admin,"
        'By=spiffe://lucid.local/wallet/payments;Hash=cd;URI="spiffe://lucid.local/ops/nodes"'
    )
    assert tls.forwarded_identity(xfcc) == ServiceIdentity("ops", "nodes")
    assert tls.forwarded_identity("By=x;Hash=y") is None
    assert tls.forwarded_identity("") is None


async def test_behind_a_sidecar_the_caller_is_the_forwarded_identity(settings: Settings) -> None:
    from lucid.supervisor.localservers import free_port

    own = settings.replace(sidecar=True, ports={**settings.ports, "payments": free_port()})
    sidecar_mesh = Mesh(own)
    await sidecar_mesh.start("payments")
    health = "/lucid.payments.v1.PayoutService/GetHealth"
    payout = "/lucid.payments.v1.PayoutService/CreatePayout"

    async def as_sidecar(identity: str, forwarded: str, method: str) -> str:
        info = catalog().methods[method]
        async with sidecar_mesh.channel("payments", identity) as channel:
            call = channel.unary_unary(
                method,
                request_serializer=lambda m: m.SerializeToString(),  # type: ignore[attr-defined]
                response_deserializer=catalog().message_class(info.output_type).FromString,
            )
            try:
                await call(
                    catalog().message_class(info.input_type)(),
                    metadata=(("x-forwarded-client-cert", f"Hash=00;URI={forwarded}"),),
                    timeout=10,
                )
            except grpc.aio.AioRpcError as error:
                return details(error).reason
        return "OK"

    try:
        # The payments sidecar (payments' own certificate) vouches for the caller.
        assert (
            await as_sidecar("payments", "spiffe://lucid.local/chain/blockchain", health) == DENIED
        )
        assert await as_sidecar("payments", "spiffe://lucid.local/edge/edge", health) == "OK"
        # Anyone else's header is ignored: the edge stays the edge (no token: 2001),
        # where a trusted "nodes" would have passed to the servicer.
        assert (
            await as_sidecar("edge", "spiffe://lucid.local/ops/nodes", payout) == "LUCID_ERR_2001"
        )
        assert admitted(await as_sidecar("payments", "spiffe://lucid.local/ops/nodes", payout))
    finally:
        await sidecar_mesh.stop_all()


def test_the_edge_reaches_the_rate_limiter_that_names_it() -> None:
    policy = PlanePolicy()
    check = catalog().methods["/lucid.gateway.v1.RateLimitService/CheckRateLimit"]
    assert not check.routes
    decision = policy.decide(identity_for("edge"), check)
    assert decision.allowed and decision.rule == "edge-to-rpcs-naming-it"
    assert not policy.decide(identity_for("operator"), check).allowed
    assert not policy.decide(identity_for("payments"), check).allowed
