"""XrdpService: the daemon's settings and service control (spec 04 §2), proto ↔
``XrdpDaemon``."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from lucid.rdp.convert_xrdp import changes, config, status
from lucid.rdp.limits import CallLimits
from lucid.rdp.v1 import xrdp_pb2, xrdp_pb2_grpc
from lucid.rdp.xrdp import XrdpDaemon

Context: TypeAlias = grpc.aio.ServicerContext


class XrdpServicer(xrdp_pb2_grpc.XrdpServiceServicer):
    """The daemon: settings, start, stop, restart, status."""

    def __init__(self, daemon: XrdpDaemon, calls: CallLimits) -> None:
        self.calls = calls
        self.daemon = daemon

    async def GetXrdpConfig(
        self, request: xrdp_pb2.GetXrdpConfigRequest, context: Context
    ) -> xrdp_pb2.GetXrdpConfigResponse:
        await self.calls.actor("xrdp")
        return xrdp_pb2.GetXrdpConfigResponse(config=config(await self.daemon.config()))

    async def UpdateXrdpConfig(
        self, request: xrdp_pb2.UpdateXrdpConfigRequest, context: Context
    ) -> xrdp_pb2.UpdateXrdpConfigResponse:
        updated, restart = await self.daemon.update(
            await self.calls.actor("xrdp"), changes(request)
        )
        return xrdp_pb2.UpdateXrdpConfigResponse(config=config(updated), restart_required=restart)

    async def StartXrdpService(
        self, request: xrdp_pb2.StartXrdpServiceRequest, context: Context
    ) -> xrdp_pb2.StartXrdpServiceResponse:
        state = await self.daemon.start(await self.calls.actor("xrdp"))
        return xrdp_pb2.StartXrdpServiceResponse(status=status(state), message="running")

    async def StopXrdpService(
        self, request: xrdp_pb2.StopXrdpServiceRequest, context: Context
    ) -> xrdp_pb2.StopXrdpServiceResponse:
        state = await self.daemon.stop(await self.calls.actor("xrdp"))
        return xrdp_pb2.StopXrdpServiceResponse(status=status(state), message="stopped")

    async def RestartXrdpService(
        self, request: xrdp_pb2.RestartXrdpServiceRequest, context: Context
    ) -> xrdp_pb2.RestartXrdpServiceResponse:
        state = await self.daemon.restart(await self.calls.actor("xrdp"))
        return xrdp_pb2.RestartXrdpServiceResponse(status=status(state), message="restarted")

    async def GetXrdpStatus(
        self, request: xrdp_pb2.GetXrdpStatusRequest, context: Context
    ) -> xrdp_pb2.GetXrdpStatusResponse:
        await self.calls.actor("xrdp")
        return xrdp_pb2.GetXrdpStatusResponse(status=status(await self.daemon.status()))
