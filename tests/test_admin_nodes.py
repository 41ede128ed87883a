"""AdminNodeService over gRPC against the real nodes cluster: the console lists nodes,
reads their metrics, restarts them and puts them into maintenance (carried out and
checked by the nodes cluster, audited in admin's chain); users and node operators are
refused on every rpc and an admin on the changes (super admins only); a bad timeframe
and an unknown node get clear errors. The dashboard's node summary follows the fleet."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from lucid.admin.v1 import (
    admin_pb2,
    audit_pb2,
    audit_pb2_grpc,
    dashboard_pb2,
    dashboard_pb2_grpc,
    operations_pb2,
)
from lucid.admin.v1 import operations_pb2_grpc as ops_grpc
from lucid.common.v1 import access_pb2
from lucid.nodes.v1 import nodes_pb2 as npb
from tests.admin_support import refused
from tests.nodes_support import NodesKit, nodes_kit
from tests.support import Mesh, bearer, details

OP = operations_pb2


@pytest.fixture(scope="module")
async def kit(mesh: Mesh) -> AsyncIterator[NodesKit]:
    async with nodes_kit(mesh) as kit:
        await mesh.start("sessions")  # the overview counts sessions too
        await mesh.start("admin")
        yield kit
        await mesh.stop("admin")
        await mesh.stop("sessions")


async def admin_md(mesh: Mesh, role: int = access_pb2.ROLE_ADMIN) -> tuple[tuple[str, str]]:
    return bearer(await mesh.token(role=role, user_id=str(uuid.uuid4())))


async def node_audit(mesh: Mesh, node_id: str) -> list[audit_pb2.AuditEntry]:
    """Admin's own entries about a node (not the nodes cluster's published events)."""
    async with mesh.channel("admin") as channel:
        reply = await audit_pb2_grpc.AuditServiceStub(channel).QueryAuditLogs(
            audit_pb2.QueryAuditLogsRequest(
                resource=audit_pb2.AUDIT_RESOURCE_NODE, resource_id=node_id
            ),
            metadata=await admin_md(mesh),
        )
    return [e for e in reply.entries if "event_type" not in e.details.fields]


async def test_list_and_metrics_show_the_nodes_cluster_state(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.active_node(op)
    await kit.nodes.SendHeartbeat(
        npb.SendHeartbeatRequest(
            node_id=node.node_id,
            sample=npb.NodeResourceSample(
                cpu_percent=21.5, memory_percent=40, disk_percent=10, load_average=0.75
            ),
        ),
        metadata=op.md,
    )
    md = await admin_md(kit.mesh)
    async with kit.mesh.channel("admin") as channel:
        stub = ops_grpc.AdminNodeServiceStub(channel)
        online = await stub.ListNodes(
            OP.ListNodesRequest(state=admin_pb2.ADMIN_NODE_STATE_ONLINE, page_size=100),
            metadata=md,
        )
        listed = {n.node_id: n for n in online.nodes}
        assert listed[node.node_id].state == admin_pb2.ADMIN_NODE_STATE_ONLINE
        assert listed[node.node_id].hostname == node.name
        assert listed[node.node_id].node_type == "worker"
        offline = await stub.ListNodes(
            OP.ListNodesRequest(state=admin_pb2.ADMIN_NODE_STATE_OFFLINE, page_size=100),
            metadata=md,
        )
        assert node.node_id not in {n.node_id for n in offline.nodes}

        metrics = await stub.GetNodeMetrics(
            OP.GetNodeMetricsRequest(node_id=node.node_id, timeframe=admin_pb2.TIMEFRAME_24H),
            metadata=md,
        )
        assert metrics.node.node_id == node.node_id
        assert metrics.node.cpu_percent == pytest.approx(21.5)
        assert metrics.node.load_average == pytest.approx(0.75)
        assert [(p.cpu_percent, p.memory_percent) for p in metrics.points] == [(21.5, 40)]

        error = await refused(
            stub.GetNodeMetrics(
                OP.GetNodeMetricsRequest(node_id=node.node_id, timeframe=admin_pb2.TIMEFRAME_30D),
                metadata=md,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(error).reason == "LUCID_ERR_1001"
        error = await refused(
            stub.GetNodeMetrics(OP.GetNodeMetricsRequest(node_id=str(uuid.uuid4())), metadata=md)
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_maintenance_and_restart_are_carried_out_by_nodes(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.active_node(op)
    md = await admin_md(kit.mesh, access_pb2.ROLE_SUPER_ADMIN)
    get = npb.GetNodeRequest(node_id=node.node_id)
    async with kit.mesh.channel("admin") as channel:
        stub = ops_grpc.AdminNodeServiceStub(channel)
        reply = await stub.SetNodeMaintenance(
            OP.SetNodeMaintenanceRequest(node_id=node.node_id, maintenance=True, reason="disk"),
            metadata=md,
        )
        assert reply.node.state == admin_pb2.ADMIN_NODE_STATE_MAINTENANCE
        at_nodes = await kit.nodes.GetNode(get, metadata=op.md)
        assert at_nodes.node.state == npb.NODE_STATE_MAINTENANCE

        restarted = await stub.RestartNode(
            OP.RestartNodeRequest(node_id=node.node_id, reason="after maintenance"), metadata=md
        )
        assert restarted.node.state == admin_pb2.ADMIN_NODE_STATE_ONLINE
        assert restarted.message.startswith("restarted")
        at_nodes = await kit.nodes.GetNode(get, metadata=op.md)
        assert at_nodes.node.state == npb.NODE_STATE_ACTIVE

        missing = str(uuid.uuid4())
        error = await refused(stub.RestartNode(OP.RestartNodeRequest(node_id=missing), metadata=md))
        assert error.code() == grpc.StatusCode.NOT_FOUND
    entries = await node_audit(kit.mesh, node.node_id)
    kinds = sorted("restart" if "operation" in e.details.fields else "maintenance" for e in entries)
    assert kinds == ["maintenance", "restart"]
    assert all(e.result == audit_pb2.AUDIT_RESULT_SUCCESS for e in entries)
    failed = await node_audit(kit.mesh, missing)
    assert [e.result for e in failed] == [audit_pb2.AUDIT_RESULT_FAILURE]


async def test_users_and_node_operators_are_refused(kit: NodesKit) -> None:
    op = await kit.operator()
    node, _ = await kit.active_node(op)
    node_id = node.node_id
    async with kit.mesh.channel("admin") as channel:
        stub = ops_grpc.AdminNodeServiceStub(channel)
        admin = await admin_md(kit.mesh)
        for call in (
            stub.RestartNode(OP.RestartNodeRequest(node_id=node_id), metadata=admin),
            stub.SetNodeMaintenance(
                OP.SetNodeMaintenanceRequest(node_id=node_id, maintenance=True), metadata=admin
            ),
        ):
            error = await refused(call)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, "only super admins manage"
        for role in (access_pb2.ROLE_USER, access_pb2.ROLE_NODE_OPERATOR):
            md = bearer(await kit.mesh.token(role=role, user_id=op.user_id))
            for call in (
                stub.ListNodes(OP.ListNodesRequest(), metadata=md),
                stub.GetNodeMetrics(OP.GetNodeMetricsRequest(node_id=node_id), metadata=md),
                stub.RestartNode(OP.RestartNodeRequest(node_id=node_id), metadata=md),
                stub.SetNodeMaintenance(
                    OP.SetNodeMaintenanceRequest(node_id=node_id, maintenance=True), metadata=md
                ),
            ):
                error = await refused(call)
                assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    at_nodes = await kit.nodes.GetNode(npb.GetNodeRequest(node_id=node_id), metadata=op.md)
    assert at_nodes.node.state == npb.NODE_STATE_ACTIVE


async def overview_nodes(mesh: Mesh) -> dashboard_pb2.NodeSummary:
    async with mesh.channel("admin") as channel:
        reply = await dashboard_pb2_grpc.DashboardServiceStub(channel).GetOverview(
            dashboard_pb2.GetOverviewRequest(), metadata=await admin_md(mesh)
        )
    return reply.overview.node_status


async def test_the_dashboard_counts_nodes_by_state(kit: NodesKit) -> None:
    before = await overview_nodes(kit.mesh)
    op = await kit.operator()
    await kit.register(op)
    active, _ = await kit.active_node(op)
    kept, _ = await kit.active_node(op)
    async with kit.mesh.channel("admin") as channel:
        await ops_grpc.AdminNodeServiceStub(channel).SetNodeMaintenance(
            OP.SetNodeMaintenanceRequest(node_id=kept.node_id, maintenance=True),
            metadata=await admin_md(kit.mesh, access_pb2.ROLE_SUPER_ADMIN),
        )
    after = await overview_nodes(kit.mesh)
    assert after.total_nodes == before.total_nodes + 3
    assert after.online_nodes == before.online_nodes + 1
    assert after.offline_nodes == before.offline_nodes + 1
    assert after.maintenance_nodes == before.maintenance_nodes + 1
    assert active.node_id
