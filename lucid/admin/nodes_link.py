"""The nodes cluster's node rpcs, made on behalf of the signed-in administrator (its
token forwarded, so the nodes cluster applies its own rules and state machine)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lucid.admin.clusters import call_cluster
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import nodes_pb2_grpc
from lucid.runtime.channels import Channels, UnavailableClusterError
from lucid.runtime.errors import LucidError
from lucid.runtime.wire import moment

ONLINE = (npb.NODE_STATE_ACTIVE, npb.NODE_STATE_STARTING)


@dataclass(frozen=True)
class NodeView:
    """What admin shows of a node (its last resource sample included)."""

    node_id: str
    name: str
    state: str
    pool_id: str
    node_type: str
    last_heartbeat: datetime | None
    sample: Sample | None = None


@dataclass(frozen=True)
class Sample:
    """One resource sample of a node."""

    at: datetime | None
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    network_in: int
    network_out: int
    load_average: float
    active_sessions: int


@dataclass(frozen=True)
class FleetView:
    """Node counts by console state, and the fleet's load."""

    total: int
    online: int
    offline: int
    maintenance: int
    load_average: float


def console_state(state: int) -> str:
    """online, maintenance or offline, from a nodes-cluster NodeState."""
    if state in ONLINE:
        return "online"
    return "maintenance" if state == npb.NODE_STATE_MAINTENANCE else "offline"


def node_view(node: npb.Node, sample: Sample | None = None) -> NodeView:
    """The view of a nodes-cluster Node."""
    beat = node.last_heartbeat_time
    return NodeView(
        node_id=node.node_id,
        name=node.name,
        state=console_state(node.state),
        pool_id=node.pool_id,
        node_type=npb.NodeType.Name(node.node_type).removeprefix("NODE_TYPE_").lower(),
        last_heartbeat=moment(beat) if node.HasField("last_heartbeat_time") else None,
        sample=sample,
    )


def sample_of(s: npb.NodeResourceSample) -> Sample:
    """A Sample of a nodes-cluster NodeResourceSample."""
    return Sample(
        at=moment(s.sample_time) if s.HasField("sample_time") else None,
        cpu_percent=s.cpu_percent,
        memory_percent=s.memory_percent,
        disk_percent=s.disk_percent,
        network_in=s.network_in_bytes_per_second,
        network_out=s.network_out_bytes_per_second,
        load_average=s.load_average,
        active_sessions=s.active_sessions,
    )


class NodesAsAdmin:
    """ListNodes, GetNode, GetNodeMetrics, RestartNode and UpdateNode (state) as the
    administrator."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def _call(self, method: str, request: Any, token: str) -> Any:
        stub_type = nodes_pb2_grpc.NodeServiceStub
        return await call_cluster(self._channels, "nodes", stub_type, method, request, token=token)

    async def page(
        self, state: int, page_size: int, page_token: str, token: str
    ) -> tuple[list[NodeView], str, int]:
        """One page of ListNodes (``state`` a nodes-cluster NodeState, 0 for all)."""
        request = npb.ListNodesRequest(
            state=npb.NodeState.ValueType(state), page_size=page_size, page_token=page_token
        )
        reply = await self._call("ListNodes", request, token)
        return [node_view(n) for n in reply.nodes], reply.next_page_token, int(reply.total_size)

    async def get(self, node_id: str, token: str) -> NodeView:
        """GetNode."""
        reply = await self._call("GetNode", npb.GetNodeRequest(node_id=node_id), token)
        return node_view(reply.node)

    async def samples(self, node_id: str, time_range: int, token: str) -> list[Sample]:
        """GetNodeMetrics over ``time_range`` (a nodes-cluster TimeRange)."""
        request = npb.GetNodeMetricsRequest(
            node_id=node_id, time_range=npb.TimeRange.ValueType(time_range)
        )
        reply = await self._call("GetNodeMetrics", request, token)
        return [sample_of(s) for s in reply.samples]

    async def restart(self, node_id: str, reason: str, token: str) -> tuple[NodeView, str]:
        """RestartNode: the node and the nodes cluster's message."""
        request = npb.RestartNodeRequest(node_id=node_id, reason=reason)
        result = (await self._call("RestartNode", request, token)).result
        return node_view(result.node), str(result.message)

    async def set_state(self, node_id: str, state: int, token: str) -> NodeView:
        """UpdateNode with a new state."""
        request = npb.UpdateNodeRequest(node_id=node_id, state=npb.NodeState.ValueType(state))
        return node_view((await self._call("UpdateNode", request, token)).node)

    async def fleet(self, token: str) -> FleetView | None:
        """GetFleetStatus; None if the nodes cluster does not answer (the dashboard then
        shows no node summary rather than failing)."""
        try:
            reply = await self._call("GetFleetStatus", npb.GetFleetStatusRequest(), token)
        except (LucidError, UnavailableClusterError, OSError):
            return None
        counts = {"online": 0, "offline": 0, "maintenance": 0}
        for entry in reply.by_state:
            counts[console_state(entry.state)] += entry.count
        return FleetView(
            int(reply.total_nodes),
            counts["online"],
            counts["offline"],
            counts["maintenance"],
            reply.load_average,
        )
