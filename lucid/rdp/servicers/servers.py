"""RdpServerService: servers and their lifecycle (spec 04 §2), proto ↔ ``Servers``."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from lucid.rdp import convert
from lucid.rdp.limits import CallLimits
from lucid.rdp.servers import Servers
from lucid.rdp.v1 import rdp_pb2, rdp_pb2_grpc
from lucid.runtime import paging

Context: TypeAlias = grpc.aio.ServicerContext


def _result(
    action: rdp_pb2.ServerAction.ValueType, server: rdp_pb2.Server, message: str, terminated: int
) -> rdp_pb2.ServerActionResult:
    return rdp_pb2.ServerActionResult(
        action=action,
        state=server.state,
        message=message,
        terminated_sessions=terminated,
        server=server,
    )


class RdpServerServicer(rdp_pb2_grpc.RdpServerServiceServicer):
    """Servers: create, read, update, delete, start, stop, restart, status, maintenance."""

    def __init__(self, servers: Servers, calls: CallLimits) -> None:
        self.calls = calls
        self.servers = servers

    async def ListServers(
        self, request: rdp_pb2.ListServersRequest, context: Context
    ) -> rdp_pb2.ListServersResponse:
        who = await self.calls.actor("servers")
        page = paging.page(request, scope=who.user_id)
        records, total = await self.servers.find(
            who,
            state=convert.server_state_name(request.state),
            user_id=request.user_id,
            offset=page.offset,
            limit=page.size,
        )
        return rdp_pb2.ListServersResponse(
            servers=[convert.server(r) for r in records],
            next_page_token=page.next_token(len(records), total),
            total_size=total,
        )

    async def CreateServer(
        self, request: rdp_pb2.CreateServerRequest, context: Context
    ) -> rdp_pb2.CreateServerResponse:
        record = await self.servers.create(
            await self.calls.actor("servers"),
            name=request.name,
            description=request.description,
            user_id=request.user_id,
            config=convert.desktop_config(request.configuration),
            resources=convert.resources(request.resources),
            preferred_port=request.preferred_port,
        )
        return rdp_pb2.CreateServerResponse(server=convert.server(record))

    async def GetServer(
        self, request: rdp_pb2.GetServerRequest, context: Context
    ) -> rdp_pb2.GetServerResponse:
        record = await self.servers.get(await self.calls.actor("servers"), request.server_id)
        return rdp_pb2.GetServerResponse(server=convert.server(record))

    async def UpdateServer(
        self, request: rdp_pb2.UpdateServerRequest, context: Context
    ) -> rdp_pb2.UpdateServerResponse:
        record = await self.servers.update(
            await self.calls.actor("servers"),
            request.server_id,
            name=request.name,
            description=request.description,
            config=convert.desktop_config(request.configuration)
            if request.HasField("configuration")
            else None,
            resources=convert.resources(request.resources)
            if request.HasField("resources")
            else None,
        )
        return rdp_pb2.UpdateServerResponse(server=convert.server(record))

    async def DeleteServer(
        self, request: rdp_pb2.DeleteServerRequest, context: Context
    ) -> rdp_pb2.DeleteServerResponse:
        await self.servers.delete(await self.calls.actor("servers"), request.server_id)
        return rdp_pb2.DeleteServerResponse()

    async def StartServer(
        self, request: rdp_pb2.StartServerRequest, context: Context
    ) -> rdp_pb2.StartServerResponse:
        record = await self.servers.start(await self.calls.actor("servers"), request.server_id)
        server = convert.server(record)
        return rdp_pb2.StartServerResponse(
            result=_result(rdp_pb2.SERVER_ACTION_START, server, "started", 0)
        )

    async def StopServer(
        self, request: rdp_pb2.StopServerRequest, context: Context
    ) -> rdp_pb2.StopServerResponse:
        record, terminated = await self.servers.stop(
            await self.calls.actor("servers"), request.server_id, force=request.force
        )
        server = convert.server(record)
        return rdp_pb2.StopServerResponse(
            result=_result(rdp_pb2.SERVER_ACTION_STOP, server, "stopped", terminated)
        )

    async def RestartServer(
        self, request: rdp_pb2.RestartServerRequest, context: Context
    ) -> rdp_pb2.RestartServerResponse:
        record, terminated = await self.servers.restart(
            await self.calls.actor("servers"), request.server_id, force=request.force
        )
        server = convert.server(record)
        return rdp_pb2.RestartServerResponse(
            result=_result(rdp_pb2.SERVER_ACTION_RESTART, server, "restarted", terminated)
        )

    async def GetServerStatus(
        self, request: rdp_pb2.GetServerStatusRequest, context: Context
    ) -> rdp_pb2.GetServerStatusResponse:
        record, sessions, uptime, reachable = await self.servers.status(
            await self.calls.actor("servers"), request.server_id
        )
        return rdp_pb2.GetServerStatusResponse(
            server_id=record.server_id,
            state=convert.server_state(record.state),
            uptime_seconds=int(uptime),
            active_sessions=sessions,
            port_reachable=reachable,
        )

    async def SetServerMaintenance(
        self, request: rdp_pb2.SetServerMaintenanceRequest, context: Context
    ) -> rdp_pb2.SetServerMaintenanceResponse:
        record = await self.servers.set_maintenance(
            await self.calls.actor("servers"),
            request.server_id,
            maintenance=request.maintenance,
            reason=request.reason,
        )
        return rdp_pb2.SetServerMaintenanceResponse(server=convert.server(record))
