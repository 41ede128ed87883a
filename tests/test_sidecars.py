"""Sidecar mode: clusters behind their own Envoy sidecars (``lucid.supervisor.sidecars``),
as ``envoy/sidecar-*.json`` describe production — RBAC by SPIFFE id in Envoy and the
plane policy in-process, an allowed call (sessions → blockchain anchoring) end to end
through both sidecars, and a forged ``x-forwarded-client-cert`` ignored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.blockchain.v1 import anchoring_pb2 as apb
from lucid.payments.v1 import payouts_pb2, payouts_pb2_grpc
from lucid.runtime.config import Settings
from lucid.runtime.identity import identity_for
from lucid.runtime.server import ClusterServer, Runtime
from lucid.supervisor.localservers import free_port
from lucid.supervisor.sidecars import SidecarLayout, running_sidecars
from tests.chain_support import ChainStubs, anchor_request, wait_for
from tests.support import builder_of, details, operator_channel

BEHIND = ("blockchain", "payments")
FORGED = f"By={identity_for('blockchain').spiffe_id};URI={identity_for('sessions').spiffe_id}"


@dataclass
class Sidecars:
    settings: Settings
    layout: SidecarLayout

    def app_channel(self, cluster: str, identity: str) -> grpc.aio.Channel:
        """Straight to a cluster's own server, past its sidecar, as ``identity``."""
        ports = {**self.settings.ports, cluster: self.layout.app[cluster]}
        return operator_channel(self.settings.replace(ports=ports), cluster, identity)

    def outbound(self, caller: str, peer: str) -> grpc.aio.Channel:
        """What ``caller``'s process dials for ``peer``: its sidecar's outbound listener."""
        port = self.layout.outbound[caller][peer]
        return grpc.aio.insecure_channel(f"127.0.0.1:{port}")


@pytest.fixture(scope="module")
async def sidecars(settings: Settings) -> AsyncIterator[Sidecars]:
    base = settings.replace(
        ports={**settings.ports, **{c: free_port() for c in (*BEHIND, "sessions", "gateway")}}
    )
    layout = SidecarLayout.allocate(base, clusters=(*BEHIND, "sessions", "gateway"))
    servers = []
    try:
        for cluster in BEHIND:
            runtime = Runtime(layout.cluster_settings(base, cluster), cluster)
            server = ClusterServer(
                runtime, await builder_of(cluster)(runtime), port=layout.app[cluster]
            )
            await server.start()
            servers.append(server)
        async with running_sidecars(base, layout, (*BEHIND, "sessions", "gateway")):
            async with operator_channel(base, "blockchain") as channel:
                await wait_for(ChainStubs(channel).ready, timeout_s=60)
            yield Sidecars(base, layout)
    finally:
        for server in servers:
            await server.stop(grace_s=0.2)


async def test_blockchain_to_payments_is_denied_by_envoy_rbac(sidecars: Sidecars) -> None:
    # blockchain's sidecar has no route to payments at all (the table never allows it)
    assert "payments" not in sidecars.layout.outbound["blockchain"]
    # and payments' sidecar refuses blockchain's certificate: RBAC, before the server
    async with operator_channel(sidecars.settings, "payments", "blockchain") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await payouts_pb2_grpc.PayoutServiceStub(channel).GetPayoutStats(
                payouts_pb2.GetPayoutStatsRequest()
            )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "RBAC" in (denied.value.details() or "")


async def test_the_gateway_reaches_every_cluster_for_health_only(sidecars: Sidecars) -> None:
    assert "payments" in sidecars.layout.health_only["gateway"]
    async with sidecars.outbound("gateway", "payments") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as no_route:
            await payouts_pb2_grpc.PayoutServiceStub(channel).GetPayoutStats(
                payouts_pb2.GetPayoutStatsRequest()
            )
    assert no_route.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_blockchain_to_payments_is_denied_in_process_too(sidecars: Sidecars) -> None:
    async with sidecars.app_channel("payments", "blockchain") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await payouts_pb2_grpc.PayoutServiceStub(channel).GetPayoutStats(
                payouts_pb2.GetPayoutStatsRequest()
            )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(denied.value).reason == "LUCID_ERR_2013"


async def test_sessions_anchors_on_the_chain_through_both_sidecars(sidecars: Sidecars) -> None:
    request = anchor_request()
    async with sidecars.outbound("sessions", "blockchain") as channel:
        stubs = ChainStubs(channel)
        created = (await stubs.anchoring.AnchorSession(request)).anchoring
        assert created.status == apb.ANCHORING_STATUS_PENDING

        async def final() -> apb.SessionAnchoring | None:
            reply = await stubs.anchoring.GetSessionAnchoring(
                apb.GetSessionAnchoringRequest(session_id=request.session_id)
            )
            return reply.anchoring if reply.anchoring.final else None

        record = await wait_for(final, timeout_s=30)
    assert record.status == apb.ANCHORING_STATUS_CONFIRMED and record.block_height > 0


async def test_a_forged_client_cert_header_is_ignored(sidecars: Sidecars) -> None:
    forged = (("x-forwarded-client-cert", FORGED),)
    # past the sidecar: the header counts only on connections with blockchain's own
    # certificate; from nodes it is ignored, and nodes may not anchor
    async with sidecars.app_channel("blockchain", "nodes") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ChainStubs(channel).anchoring.AnchorSession(anchor_request(), metadata=forged)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # through the sidecars: the header a caller sends is replaced by its real identity
    # (nodes has no outbound listener to blockchain's anchoring; through nodes' mTLS
    # straight to blockchain's sidecar, RBAC refuses it whatever the header says)
    async with operator_channel(sidecars.settings, "blockchain", "nodes") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as rbac:
            await ChainStubs(channel).anchoring.AnchorSession(anchor_request(), metadata=forged)
    assert rbac.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "RBAC" in (rbac.value.details() or "")
    # sessions claiming to be nodes (who may not anchor) still anchors: the sidecars
    # drop what the caller sent and name the certificate they saw
    as_nodes = (("x-forwarded-client-cert", f"URI={identity_for('nodes').spiffe_id}"),)
    async with sidecars.outbound("sessions", "blockchain") as channel:
        reply = await ChainStubs(channel).anchoring.AnchorSession(
            anchor_request(), metadata=as_nodes
        )
    assert reply.anchoring.status == apb.ANCHORING_STATUS_PENDING
