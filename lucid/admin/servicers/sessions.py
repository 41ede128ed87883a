"""``lucid.admin.v1.AdminSessionService``: the console's session operations.

ListSessions, GetSessionDetails, GetSessionLogs, TerminateSession and
BulkTerminateSessions.
"""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.session_views import SessionViews
from lucid.admin.terminations import Terminations
from lucid.admin.v1 import admin_pb2, operations_pb2, operations_pb2_grpc
from lucid.runtime.audit import client_of
from lucid.runtime.context import current_principal
from lucid.runtime.paging import page


class AdminSessionServicer(operations_pb2_grpc.AdminSessionServiceServicer):
    """Session termination, carried out by the sessions cluster."""

    def __init__(self, views: SessionViews, terminations: Terminations) -> None:
        self.views = views
        self.terminations = terminations

    async def ListSessions(
        self, request: operations_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.ListSessionsResponse:
        state = convert.stored(admin_pb2.AdminSessionState, "ADMIN_SESSION_STATE_", request.state)
        window = page(request)
        views, total = await self.views.page(
            state, request.user_id, window.offset, window.size, current_principal().token
        )
        return operations_pb2.ListSessionsResponse(
            sessions=[convert.admin_session(v) for v in views],
            next_page_token=window.next_token(len(views), total),
            total_size=total,
        )

    async def GetSessionDetails(
        self, request: operations_pb2.GetSessionDetailsRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.GetSessionDetailsResponse:
        view = await self.views.details(request.session_id, current_principal().token)
        return convert.session_details(view)

    async def GetSessionLogs(
        self, request: operations_pb2.GetSessionLogsRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.GetSessionLogsResponse:
        lines, next_token, total = await self.views.logs(
            request.session_id, request.page_size, request.page_token, current_principal().token
        )
        return operations_pb2.GetSessionLogsResponse(
            entries=[convert.session_log_entry(line) for line in lines],
            next_page_token=next_token,
            total_size=total,
        )

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
