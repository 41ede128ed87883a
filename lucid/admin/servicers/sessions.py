"""``lucid.admin.v1.AdminSessionService``: the console's session operations.

Built: TerminateSession and BulkTerminateSessions. ListSessions, GetSessionDetails
and GetSessionLogs answer UNIMPLEMENTED (inherited from the generated base).
"""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.terminations import Terminations
from lucid.admin.v1 import operations_pb2, operations_pb2_grpc
from lucid.runtime.audit import client_of


class AdminSessionServicer(operations_pb2_grpc.AdminSessionServiceServicer):
    """Session termination, carried out by the sessions cluster."""

    def __init__(self, terminations: Terminations) -> None:
        self.terminations = terminations

    async def TerminateSession(
        self, request: operations_pb2.TerminateSessionRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.TerminateSessionResponse:
        view = await self.terminations.terminate(
            request.session_id, request.reason, client_of(context)
        )
        return operations_pb2.TerminateSessionResponse(session=convert.admin_session(view))

    async def BulkTerminateSessions(
        self,
        request: operations_pb2.BulkTerminateSessionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> operations_pb2.BulkTerminateSessionsResponse:
        results = await self.terminations.terminate_many(
            list(request.session_ids), request.reason, client_of(context)
        )
        return operations_pb2.BulkTerminateSessionsResponse(
            results=[convert.termination(r) for r in results],
            total_attempted=len(results),
            successful=sum(r.success for r in results),
        )
