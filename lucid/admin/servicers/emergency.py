"""``lucid.admin.v1.EmergencyService``: the emergency controls over gRPC."""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.emergency import Emergency
from lucid.admin.v1 import emergency_pb2, emergency_pb2_grpc
from lucid.runtime.audit import client_of
from lucid.runtime.paging import page


class EmergencyServicer(emergency_pb2_grpc.EmergencyServiceServicer):
    """Stop-all, lockdown, new-session switch, mode and logs."""

    def __init__(self, emergency: Emergency) -> None:
        self.emergency = emergency

    async def StopAllSessions(
        self, request: emergency_pb2.StopAllSessionsRequest, context: grpc.aio.ServicerContext
    ) -> emergency_pb2.StopAllSessionsResponse:
        done = await self.emergency.stop_all_sessions(request.reason, client_of(context))
        return emergency_pb2.StopAllSessionsResponse(
            stopped_count=done.recordings_stopped + done.rdp_stopped,
            recording_sessions_stopped=done.recordings_stopped,
            rdp_sessions_stopped=done.rdp_stopped,
            log=convert.emergency_log(done.log),
        )

    async def SystemLockdown(
        self, request: emergency_pb2.SystemLockdownRequest, context: grpc.aio.ServicerContext
    ) -> emergency_pb2.SystemLockdownResponse:
        done = await self.emergency.lockdown(
            request.reason, request.auto_revert_seconds, client_of(context)
        )
        return emergency_pb2.SystemLockdownResponse(
            status=convert.mode_status(done.mode),
            stopped_sessions=done.recordings_stopped + done.rdp_stopped,
            log=convert.emergency_log(done.log),
        )

    async def LiftLockdown(
        self, request: emergency_pb2.LiftLockdownRequest, context: grpc.aio.ServicerContext
    ) -> emergency_pb2.LiftLockdownResponse:
        done = await self.emergency.lift_lockdown(request.reason, client_of(context))
        return emergency_pb2.LiftLockdownResponse(
            status=convert.mode_status(done.mode), log=convert.emergency_log(done.log)
        )

    async def DisableNewSessions(
        self, request: emergency_pb2.DisableNewSessionsRequest, context: grpc.aio.ServicerContext
    ) -> emergency_pb2.DisableNewSessionsResponse:
        done = await self.emergency.disable_new_sessions(
            request.reason, request.auto_revert_seconds, client_of(context)
        )
        return emergency_pb2.DisableNewSessionsResponse(
            status=convert.mode_status(done.mode), log=convert.emergency_log(done.log)
        )

    async def EnableNewSessions(
        self, request: emergency_pb2.EnableNewSessionsRequest, context: grpc.aio.ServicerContext
    ) -> emergency_pb2.EnableNewSessionsResponse:
        done = await self.emergency.enable_new_sessions(request.reason, client_of(context))
        return emergency_pb2.EnableNewSessionsResponse(
            status=convert.mode_status(done.mode), log=convert.emergency_log(done.log)
        )

    async def GetSystemMode(
        self, request: emergency_pb2.GetSystemModeRequest, context: grpc.aio.ServicerContext
    ) -> emergency_pb2.GetSystemModeResponse:
        return emergency_pb2.GetSystemModeResponse(
            status=convert.mode_status(await self.emergency.mode())
        )

    async def ListEmergencyLogs(
        self, request: emergency_pb2.ListEmergencyLogsRequest, context: grpc.aio.ServicerContext
    ) -> emergency_pb2.ListEmergencyLogsResponse:
        action = convert.stored(emergency_pb2.EmergencyAction, "EMERGENCY_ACTION_", request.action)
        window = page(request)
        logs, total = await self.emergency.logs_page(action, window.offset, window.size)
        return emergency_pb2.ListEmergencyLogsResponse(
            logs=[convert.emergency_log(r) for r in logs],
            next_page_token=window.next_token(len(logs), total),
            total_size=total,
        )
