"""``lucid.admin.v1.AdminBlockchainService``: the chain as the console sees it.

GetBlockchainStatus, AnchorSessions, GetAnchoringOperation, GetAnchoringQueue and
ResyncBlockchain (carried out by the chain's ResyncChain).
"""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.anchorings import Anchorings
from lucid.admin.chain_queue import ChainQueue
from lucid.admin.overview import Dashboard
from lucid.admin.resync import Resyncs
from lucid.admin.v1 import operations_pb2, operations_pb2_grpc
from lucid.runtime.audit import client_of
from lucid.runtime.context import current_principal


class AdminBlockchainServicer(operations_pb2_grpc.AdminBlockchainServiceServicer):
    """Chain status and manual anchoring."""

    def __init__(
        self, dashboard: Dashboard, anchorings: Anchorings, queue: ChainQueue, resyncs: Resyncs
    ) -> None:
        self.dashboard = dashboard
        self.anchorings = anchorings
        self.queue = queue
        self.resyncs = resyncs

    async def ResyncBlockchain(
        self, request: operations_pb2.ResyncBlockchainRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.ResyncBlockchainResponse:
        from_height = request.from_height if request.HasField("from_height") else None
        done = await self.resyncs.resync(from_height, request.reason, client_of(context))
        return operations_pb2.ResyncBlockchainResponse(
            started=done.started,
            local_height=done.local_height,
            network_height=done.network_height,
            message=done.message,
        )

    async def GetAnchoringQueue(
        self, request: operations_pb2.GetAnchoringQueueRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.GetAnchoringQueueResponse:
        state = convert.stored(operations_pb2.AnchoringState, "ANCHORING_STATE_", request.state)
        found = await self.queue.page(state, request.page_size, request.page_token)
        return operations_pb2.GetAnchoringQueueResponse(
            operations=[convert.anchoring_operation(op) for op in found.operations],
            next_page_token=found.next_page_token,
            total_size=found.total,
            pending_count=found.pending,
            processing_count=found.processing,
        )

    async def AnchorSessions(
        self, request: operations_pb2.AnchorSessionsRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.AnchorSessionsResponse:
        priority = convert.stored(
            operations_pb2.AnchoringPriority, "ANCHORING_PRIORITY_", request.priority
        )
        op = await self.anchorings.anchor(
            list(request.session_ids), priority, request.reason, client_of(context)
        )
        return operations_pb2.AnchorSessionsResponse(operation=convert.anchoring_operation(op))

    async def GetAnchoringOperation(
        self,
        request: operations_pb2.GetAnchoringOperationRequest,
        context: grpc.aio.ServicerContext,
    ) -> operations_pb2.GetAnchoringOperationResponse:
        op = await self.anchorings.operation(request.operation_id, current_principal().token)
        return operations_pb2.GetAnchoringOperationResponse(
            operation=convert.anchoring_operation(op)
        )

    async def GetBlockchainStatus(
        self,
        request: operations_pb2.GetBlockchainStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> operations_pb2.GetBlockchainStatusResponse:
        chain = await self.dashboard.chain()
        return operations_pb2.GetBlockchainStatusResponse(status=convert.blockchain_status(chain))
