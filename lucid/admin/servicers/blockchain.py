"""``lucid.admin.v1.AdminBlockchainService``: the chain as the console sees it.

Built: GetBlockchainStatus, AnchorSessions and GetAnchoringOperation.
GetAnchoringQueue and ResyncBlockchain answer UNIMPLEMENTED (inherited from the
generated base).
"""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.anchorings import Anchorings
from lucid.admin.overview import Dashboard
from lucid.admin.v1 import operations_pb2, operations_pb2_grpc
from lucid.runtime.audit import client_of
from lucid.runtime.context import current_principal


class AdminBlockchainServicer(operations_pb2_grpc.AdminBlockchainServiceServicer):
    """Chain status and manual anchoring."""

    def __init__(self, dashboard: Dashboard, anchorings: Anchorings) -> None:
        self.dashboard = dashboard
        self.anchorings = anchorings

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
