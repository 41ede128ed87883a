"""``lucid.admin.v1.AdminBlockchainService``: the chain as the console sees it.

Built: GetBlockchainStatus. AnchorSessions, GetAnchoringQueue, GetAnchoringOperation
and ResyncBlockchain answer UNIMPLEMENTED (inherited from the generated base).
"""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.overview import Dashboard
from lucid.admin.v1 import operations_pb2, operations_pb2_grpc


class AdminBlockchainServicer(operations_pb2_grpc.AdminBlockchainServiceServicer):
    """Chain status."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def GetBlockchainStatus(
        self,
        request: operations_pb2.GetBlockchainStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> operations_pb2.GetBlockchainStatusResponse:
        chain = await self.dashboard.chain()
        return operations_pb2.GetBlockchainStatusResponse(status=convert.blockchain_status(chain))
