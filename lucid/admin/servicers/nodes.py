"""``lucid.admin.v1.AdminNodeService``: nodes from the console, through the nodes
cluster."""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.node_ops import NodeOps
from lucid.admin.v1 import admin_pb2, operations_pb2, operations_pb2_grpc
from lucid.runtime.audit import client_of
from lucid.runtime.context import current_principal


class AdminNodeServicer(operations_pb2_grpc.AdminNodeServiceServicer):
    """List, metrics, restart and maintenance."""

    def __init__(self, ops: NodeOps) -> None:
        self.ops = ops

    async def ListNodes(
        self, request: operations_pb2.ListNodesRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.ListNodesResponse:
        state = convert.stored(admin_pb2.AdminNodeState, "ADMIN_NODE_STATE_", request.state)
        nodes, next_token, total = await self.ops.page(
            state, request.page_size, request.page_token, current_principal().token
        )
        return operations_pb2.ListNodesResponse(
            nodes=[convert.admin_node(n) for n in nodes],
            next_page_token=next_token,
            total_size=total,
        )

    async def GetNodeMetrics(
        self, request: operations_pb2.GetNodeMetricsRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.GetNodeMetricsResponse:
        timeframe = convert.stored(admin_pb2.Timeframe, "TIMEFRAME_", request.timeframe)
        node, samples = await self.ops.metrics(
            request.node_id, timeframe, current_principal().token
        )
        return operations_pb2.GetNodeMetricsResponse(
            node=convert.admin_node(node), points=[convert.node_metric_point(s) for s in samples]
        )

    async def RestartNode(
        self, request: operations_pb2.RestartNodeRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.RestartNodeResponse:
        node, message = await self.ops.restart(request.node_id, request.reason, client_of(context))
        return operations_pb2.RestartNodeResponse(node=convert.admin_node(node), message=message)

    async def SetNodeMaintenance(
        self,
        request: operations_pb2.SetNodeMaintenanceRequest,
        context: grpc.aio.ServicerContext,
    ) -> operations_pb2.SetNodeMaintenanceResponse:
        node = await self.ops.maintenance(
            request.node_id, request.maintenance, request.reason, client_of(context)
        )
        return operations_pb2.SetNodeMaintenanceResponse(node=convert.admin_node(node))
