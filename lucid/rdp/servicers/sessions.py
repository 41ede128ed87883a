"""RdpSessionService: RDP sessions and their recordings (spec 04 §2, §4.3), proto ↔
``RdpSessions`` and ``Replay``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from lucid.rdp import convert
from lucid.rdp.limits import CallLimits
from lucid.rdp.rdpsessions import RdpSessions
from lucid.rdp.replay import Replay
from lucid.rdp.v1 import session_pb2, session_pb2_grpc
from lucid.runtime import paging, wire
from lucid.runtime.context import current_principal

Context: TypeAlias = grpc.aio.ServicerContext


class RdpSessionServicer(session_pb2_grpc.RdpSessionServiceServicer):
    """RDP sessions: create, get, connect, disconnect, terminate, replay."""

    def __init__(self, sessions: RdpSessions, replay: Replay, calls: CallLimits) -> None:
        self.calls = calls
        self.sessions = sessions
        self.replay = replay

    async def ListRdpSessions(
        self, request: session_pb2.ListRdpSessionsRequest, context: Context
    ) -> session_pb2.ListRdpSessionsResponse:
        who = await self.calls.actor("sessions")
        page = paging.page(request, scope=who.user_id)
        records, total = await self.sessions.find(
            who,
            user_id=request.user_id,
            server_id=request.server_id,
            state=convert.session_state_name(request.state),
            offset=page.offset,
            limit=page.size,
        )
        return session_pb2.ListRdpSessionsResponse(
            sessions=[convert.session(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )

    async def GetRdpSession(
        self, request: session_pb2.GetRdpSessionRequest, context: Context
    ) -> session_pb2.GetRdpSessionResponse:
        record = await self.sessions.get(await self.calls.actor("sessions"), request.session_id)
        return session_pb2.GetRdpSessionResponse(session=convert.session(record))

    async def CreateRdpSession(
        self, request: session_pb2.CreateRdpSessionRequest, context: Context
    ) -> session_pb2.CreateRdpSessionResponse:
        record = await self.sessions.create(
            await self.calls.actor("sessions"),
            server_id=request.server_id,
            user_id=request.user_id,
            session_id=request.session_id,
            client=convert.client_details(request.client_info),
        )
        return session_pb2.CreateRdpSessionResponse(session=convert.session(record))

    async def ConnectRdpSession(
        self, request: session_pb2.ConnectRdpSessionRequest, context: Context
    ) -> session_pb2.ConnectRdpSessionResponse:
        connection = await self.sessions.connect(
            await self.calls.actor("sessions"),
            request.session_id,
            convert.client_details(request.client_info),
        )
        return session_pb2.ConnectRdpSessionResponse(
            connection_info=convert.connection_info(
                connection.session, connection.server.host, connection.server.port
            ),
            access_token=connection.token,
            expire_time=wire.timestamp(connection.expires_at),
            session=convert.session(connection.session),
            username=connection.username,
            password=connection.password,
        )

    async def DisconnectRdpSession(
        self, request: session_pb2.DisconnectRdpSessionRequest, context: Context
    ) -> session_pb2.DisconnectRdpSessionResponse:
        record = await self.sessions.disconnect(
            await self.calls.actor("sessions"), request.session_id
        )
        return session_pb2.DisconnectRdpSessionResponse(session=convert.session(record))

    async def TerminateRdpSession(
        self, request: session_pb2.TerminateRdpSessionRequest, context: Context
    ) -> session_pb2.TerminateRdpSessionResponse:
        await self.sessions.terminate(
            await self.calls.actor("sessions"),
            request.session_id,
            reason="user",
            force=request.force,
        )
        return session_pb2.TerminateRdpSessionResponse()

    async def TerminateAllRdpSessions(
        self, request: session_pb2.TerminateAllRdpSessionsRequest, context: Context
    ) -> session_pb2.TerminateAllRdpSessionsResponse:
        done, failed = await self.sessions.terminate_all(
            await self.calls.actor("sessions"), f"emergency: {request.reason}"
        )
        return session_pb2.TerminateAllRdpSessionsResponse(
            terminated_count=done, failed_count=failed
        )

    async def StreamRecording(
        self, request: session_pb2.StreamRecordingRequest, context: Context
    ) -> AsyncIterator[session_pb2.StreamRecordingResponse]:
        record = await self.sessions.get(await self.calls.actor("sessions"), request.session_id)
        token = current_principal().token
        async for segment in self.replay.segments(record.session_id, token):
            yield session_pb2.StreamRecordingResponse(
                sequence_number=segment.sequence_number,
                data=segment.data,
                merkle_hash=segment.merkle_hash,
                merkle_root=segment.merkle_root,
                segment_count=segment.count,
            )
