"""NodeService: registration, nodes, lifecycle, heartbeats (with storage data and
challenges and validation tasks for active nodes), resources, fleet status."""

from __future__ import annotations

import grpc

from lucid.nodes import convert
from lucid.nodes.callers import Caller
from lucid.nodes.fleet import DEFAULT_THRESHOLD_PERCENT, HEARTBEAT_INTERVAL_S, Fleet
from lucid.nodes.registration import Application, Registrations
from lucid.nodes.resources import Resources
from lucid.nodes.storageproofs import Assignment, Challenge, StorageProofs
from lucid.nodes.store.metrics import AllocationRecord
from lucid.nodes.store.nodes import NodeQuery
from lucid.nodes.v1 import nodes_pb2 as npb
from lucid.nodes.v1 import nodes_pb2_grpc
from lucid.nodes.validationwork import ValidationWork
from lucid.runtime import paging, wire


def caller(context: grpc.aio.ServicerContext) -> Caller:
    """The caller of the current rpc."""
    return Caller.of(context)


class NodeServiceServicer(nodes_pb2_grpc.NodeServiceServicer):
    """Translates NodeService calls to the node domain."""

    def __init__(
        self,
        registrations: Registrations,
        fleet: Fleet,
        resources: Resources,
        storage: StorageProofs,
        validation: ValidationWork,
    ) -> None:
        self.storage = storage
        self.validation = validation
        self.registrations = registrations
        self.fleet = fleet
        self.resources = resources

    async def IssueRegistrationChallenge(
        self, request: npb.IssueRegistrationChallengeRequest, context: grpc.aio.ServicerContext
    ) -> npb.IssueRegistrationChallengeResponse:
        record = await self.registrations.issue(request.node_address, caller(context))
        return npb.IssueRegistrationChallengeResponse(
            registration_id=record.registration_id,
            node_id=record.node_id,
            message=record.message,
            expire_time=wire.optional_timestamp(record.challenge_expires_at),
        )

    async def RegisterNode(
        self, request: npb.RegisterNodeRequest, context: grpc.aio.ServicerContext
    ) -> npb.RegisterNodeResponse:
        application = Application(
            name=request.name,
            node_type=request.node_type,
            hardware=convert.as_dict(request.hardware_info),
            location=convert.as_dict(request.location),
            configuration=convert.as_dict(request.configuration),
            initial_pool_id=request.initial_pool_id,
            onion_address=request.onion_address,
            port=request.port,
            capabilities=list(request.capabilities),
            node_public_key=request.node_public_key,
            stake_amount_micros=request.stake_amount_micros,
            stake_tx_hash=request.stake_tx_hash,
        )
        node, registration = await self.registrations.register(
            request.registration_id, request.signature, application, caller(context)
        )
        return npb.RegisterNodeResponse(
            node=convert.node(node), registration=convert.registration(registration)
        )

    async def ListNodes(
        self, request: npb.ListNodesRequest, context: grpc.aio.ServicerContext
    ) -> npb.ListNodesResponse:
        page = paging.page(request, scope=caller(context).user_id)
        query = NodeQuery(
            state=request.state,
            pool_id=request.pool_id,
            node_type=request.node_type,
            owner_user_id=request.owner_user_id,
        )
        records, total = await self.fleet.list(query, caller(context), page.offset, page.size)
        return npb.ListNodesResponse(
            nodes=[convert.node(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )

    async def GetNode(
        self, request: npb.GetNodeRequest, context: grpc.aio.ServicerContext
    ) -> npb.GetNodeResponse:
        return npb.GetNodeResponse(
            node=convert.node(await self.fleet.get(request.node_id, caller(context)))
        )

    async def UpdateNode(
        self, request: npb.UpdateNodeRequest, context: grpc.aio.ServicerContext
    ) -> npb.UpdateNodeResponse:
        changes: dict[str, object] = {}
        if request.name:
            changes["name"] = request.name
        if request.node_type:
            changes["node_type"] = request.node_type
        if request.pool_id:
            changes["pool_id"] = request.pool_id
        if request.HasField("configuration"):
            changes["configuration"] = convert.as_dict(request.configuration)
        if request.state:
            changes["state"] = request.state
        record = await self.fleet.update(request.node_id, changes, caller(context), request.reason)
        return npb.UpdateNodeResponse(node=convert.node(record))

    async def DeleteNode(
        self, request: npb.DeleteNodeRequest, context: grpc.aio.ServicerContext
    ) -> npb.DeleteNodeResponse:
        await self.fleet.delete(request.node_id, caller(context))
        return npb.DeleteNodeResponse()

    async def StartNode(
        self, request: npb.StartNodeRequest, context: grpc.aio.ServicerContext
    ) -> npb.StartNodeResponse:
        result = await self.fleet.start(request.node_id, caller(context))
        return npb.StartNodeResponse(result=convert.action(result))

    async def StopNode(
        self, request: npb.StopNodeRequest, context: grpc.aio.ServicerContext
    ) -> npb.StopNodeResponse:
        result = await self.fleet.stop(request.node_id, caller(context))
        return npb.StopNodeResponse(result=convert.action(result))

    async def RestartNode(
        self, request: npb.RestartNodeRequest, context: grpc.aio.ServicerContext
    ) -> npb.RestartNodeResponse:
        result = await self.fleet.restart(request.node_id, caller(context))
        return npb.RestartNodeResponse(result=convert.action(result))

    async def SendHeartbeat(
        self, request: npb.SendHeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> npb.SendHeartbeatResponse:
        sample = (
            convert.sample_record(request.node_id, request.sample, self.fleet.clock.now())
            if request.HasField("sample")
            else None
        )
        record = await self.fleet.heartbeat(request.node_id, sample, caller(context))
        reply = npb.SendHeartbeatResponse(
            state=record.state,  # type: ignore[arg-type]
            server_time=wire.optional_timestamp(record.last_heartbeat),
            next_heartbeat_seconds=HEARTBEAT_INTERVAL_S,
        )
        if record.state == npb.NODE_STATE_ACTIVE:
            work = await self.storage.on_heartbeat(record, request.held_assignment_id)
            if isinstance(work, Assignment):
                reply.storage_assignment.assignment_id = work.assignment_id
                reply.storage_assignment.data = work.data
            elif isinstance(work, Challenge):
                reply.storage_challenge.CopyFrom(
                    npb.StorageChallenge(
                        assignment_id=work.assignment_id,
                        slot=work.slot,
                        offset=work.offset,
                        length=work.length,
                        nonce=work.nonce,
                    )
                )
            task = await self.validation.on_heartbeat(record)
            if task is not None:
                reply.validation_task.slot = task.slot
                reply.validation_task.items.extend(
                    npb.ValidationItem(
                        item_id=i.item_id,
                        message=bytes.fromhex(i.message),
                        public_key=i.public_key,
                        signature=i.signature,
                        node_id=i.node_id,
                    )
                    for i in task.items
                )
        return reply

    async def GetNodeResources(
        self, request: npb.GetNodeResourcesRequest, context: grpc.aio.ServicerContext
    ) -> npb.GetNodeResourcesResponse:
        found = await self.resources.capacity(request.node_id, caller(context))
        return npb.GetNodeResourcesResponse(
            node_id=found.node.node_id,
            hardware_info=convert.parsed(found.node.hardware, npb.HardwareInfo()),
            current=convert.sample(found.current) if found.current else None,
            allocations=[convert.allocation(a) for a in found.allocations],
            free_cpu_cores=found.free_cpu_cores,
            free_memory_bytes=found.free_memory_bytes,
            free_storage_bytes=found.free_storage_bytes,
            thresholds=thresholds_of(found.node.thresholds),
        )

    async def GetNodeMetrics(
        self, request: npb.GetNodeMetricsRequest, context: grpc.aio.ServicerContext
    ) -> npb.GetNodeMetricsResponse:
        samples = await self.resources.series(
            request.node_id, request.time_range, request.granularity, caller(context)
        )
        return npb.GetNodeMetricsResponse(
            node_id=request.node_id, samples=[convert.sample(s) for s in samples]
        )

    async def UpdateNodeThresholds(
        self, request: npb.UpdateNodeThresholdsRequest, context: grpc.aio.ServicerContext
    ) -> npb.UpdateNodeThresholdsResponse:
        record = await self.resources.set_thresholds(
            request.node_id, convert.as_dict(request.thresholds), caller(context)
        )
        return npb.UpdateNodeThresholdsResponse(thresholds=thresholds_of(record.thresholds))

    async def AllocateNodeResources(
        self, request: npb.AllocateNodeResourcesRequest, context: grpc.aio.ServicerContext
    ) -> npb.AllocateNodeResourcesResponse:
        want = AllocationRecord(
            allocation_id="",
            node_id=request.node_id,
            cpu_cores=request.cpu_cores,
            memory_bytes=request.memory_bytes,
            storage_bytes=request.storage_bytes,
            bandwidth_mbps=request.bandwidth_mbps,
            purpose=request.purpose,
            created_at=self.fleet.clock.now(),
        )
        record = await self.resources.allocate(
            request.node_id, want, request.duration_seconds, caller(context)
        )
        return npb.AllocateNodeResourcesResponse(allocation=convert.allocation(record))

    async def GetFleetStatus(
        self, request: npb.GetFleetStatusRequest, context: grpc.aio.ServicerContext
    ) -> npb.GetFleetStatusResponse:
        status = await self.fleet.status()
        return npb.GetFleetStatusResponse(
            total_nodes=status.total,
            healthy_nodes=status.healthy,
            by_state=[
                npb.NodeStateCount(state=s, count=c)  # type: ignore[arg-type]
                for s, c in sorted(status.by_state.items())
            ],
            health=status.health,  # type: ignore[arg-type]
            load_average=status.load_average,
        )


def thresholds_of(stored: dict[str, object]) -> npb.NodeThresholds:
    """The thresholds in force (defaults for those not set)."""
    found: npb.NodeThresholds = convert.parsed(dict(stored), npb.NodeThresholds())
    for name in ("cpu_percent", "memory_percent", "disk_percent"):
        if not getattr(found, name):
            setattr(found, name, DEFAULT_THRESHOLD_PERCENT)
    if not found.heartbeat_timeout_seconds:
        found.heartbeat_timeout_seconds = 300
    return found
