"""``lucid.mesh.v1.SidecarService``: configuration, policies, health and metrics of the
services' Envoy sidecars."""

from __future__ import annotations

import grpc

from lucid.mesh.sidecars import Sidecars
from lucid.mesh.v1 import sidecar_pb2, sidecar_pb2_grpc
from lucid.runtime.context import current_principal


class SidecarServicer(sidecar_pb2_grpc.SidecarServiceServicer):
    """Translates the sidecar rpcs to the sidecars service."""

    def __init__(self, sidecars: Sidecars) -> None:
        self.sidecars = sidecars

    async def ConfigureSidecar(
        self, request: sidecar_pb2.ConfigureSidecarRequest, context: grpc.aio.ServicerContext
    ) -> sidecar_pb2.ConfigureSidecarResponse:
        config = await self.sidecars.configure(request, current_principal())
        return sidecar_pb2.ConfigureSidecarResponse(config=config)

    async def UpdateSidecarPolicy(
        self, request: sidecar_pb2.UpdateSidecarPolicyRequest, context: grpc.aio.ServicerContext
    ) -> sidecar_pb2.UpdateSidecarPolicyResponse:
        config = await self.sidecars.update_policy(
            request.service_id, request.policy, current_principal()
        )
        return sidecar_pb2.UpdateSidecarPolicyResponse(
            policy=request.policy, config_version=config.config_version
        )

    async def GetSidecarMetrics(
        self, request: sidecar_pb2.GetSidecarMetricsRequest, context: grpc.aio.ServicerContext
    ) -> sidecar_pb2.GetSidecarMetricsResponse:
        return await self.sidecars.metrics(request.service_id, request.time_range_seconds)

    async def GetSidecarHealth(
        self, request: sidecar_pb2.GetSidecarHealthRequest, context: grpc.aio.ServicerContext
    ) -> sidecar_pb2.GetSidecarHealthResponse:
        return await self.sidecars.health(request.service_id, current_principal())
