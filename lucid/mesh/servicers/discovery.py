"""``lucid.mesh.v1.ServiceDiscoveryService``: the in-repo registry (setups without Consul)."""

from __future__ import annotations

import grpc

from lucid.mesh import convert
from lucid.mesh.discovery import Registry
from lucid.mesh.v1 import discovery_pb2, discovery_pb2_grpc
from lucid.runtime import paging
from lucid.runtime.context import current_principal

DEFAULT_PAGE = 100


class ServiceDiscoveryServicer(discovery_pb2_grpc.ServiceDiscoveryServiceServicer):
    """Translates the discovery rpcs to the registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def RegisterService(
        self, request: discovery_pb2.RegisterServiceRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.RegisterServiceResponse:
        instance = await self.registry.register(request, current_principal())
        return discovery_pb2.RegisterServiceResponse(instance=instance)

    async def DeregisterService(
        self, request: discovery_pb2.DeregisterServiceRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.DeregisterServiceResponse:
        await self.registry.deregister(request.service_id, current_principal())
        return discovery_pb2.DeregisterServiceResponse()

    async def UpdateServiceHealth(
        self, request: discovery_pb2.UpdateServiceHealthRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.UpdateServiceHealthResponse:
        instance = await self.registry.report_health(
            request.service_id,
            request.status,
            request.output,
            request.response_time_ms,
            current_principal(),
        )
        return discovery_pb2.UpdateServiceHealthResponse(
            health=instance.health, expire_time=instance.expire_time
        )

    async def ListServices(
        self, request: discovery_pb2.ListServicesRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.ListServicesResponse:
        found = await self.registry.live(convert.service_query(request))
        page = paging.page(request, default=DEFAULT_PAGE)
        shown = page.window(found)
        return discovery_pb2.ListServicesResponse(
            services=shown,
            next_page_token=page.next_token(len(shown), len(found)),
            total_size=len(found),
        )

    async def ResolveService(
        self, request: discovery_pb2.ResolveServiceRequest, context: grpc.aio.ServicerContext
    ) -> discovery_pb2.ResolveServiceResponse:
        chosen, healthy = await self.registry.resolve(
            request.service_name, request.version, request.load_balance, request.hash_key
        )
        return discovery_pb2.ResolveServiceResponse(instance=chosen, healthy_count=healthy)
