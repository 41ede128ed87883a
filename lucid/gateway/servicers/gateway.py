"""``lucid.gateway.v1.GatewayService``: meta of the API (info, version, the mesh's
aggregated health, metrics) and the traffic reports of the edge."""

from __future__ import annotations

import time

import grpc

from lucid.gateway import convert
from lucid.gateway.health import SERVICE_NAME, HealthAggregator
from lucid.gateway.traffic import TrafficLog
from lucid.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from lucid.lib.clock import Clock
from lucid.runtime.contracts import protoset_path
from lucid.runtime.server import VERSION
from lucid.runtime.wire import duration, timestamp

API_VERSION = "v1"
FEATURES = ("rest", "grpc-web", "sessions", "chain", "payments", "rdp", "nodes", "admin")
DEFAULT_WINDOW_S = 60


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """Translates the gateway's meta rpcs to the health aggregator and the traffic log."""

    def __init__(
        self, environment: str, clock: Clock, traffic: TrafficLog, health: HealthAggregator
    ) -> None:
        self.environment = environment
        self.clock = clock
        self.traffic = traffic
        self.health = health
        self.started = time.monotonic()
        try:
            self.build_time = protoset_path().stat().st_mtime
        except FileNotFoundError:
            self.build_time = time.time()

    async def GetServiceInfo(
        self, request: gateway_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetServiceInfoResponse:
        return gateway_pb2.GetServiceInfoResponse(
            service_name=SERVICE_NAME,
            version=VERSION,
            build_time=timestamp(self.build_time),
            environment=self.environment,
            features=FEATURES,
        )

    async def GetVersion(
        self, request: gateway_pb2.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetVersionResponse:
        return gateway_pb2.GetVersionResponse(
            api_version=API_VERSION, supported_versions=[API_VERSION], version=VERSION
        )

    async def GetHealth(
        self, request: gateway_pb2.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetHealthResponse:
        """The mesh's aggregated health (``health``)."""
        started = time.perf_counter()
        report = await self.health.serving()
        return gateway_pb2.GetHealthResponse(
            status=report.status,  # type: ignore[arg-type]
            service=SERVICE_NAME,
            version=VERSION,
            check_time=timestamp(report.checked_at),
            dependencies=[convert.dependency(p) for p in report.probes],
            uptime=duration(time.monotonic() - self.started),
            response_time_ms=round((time.perf_counter() - started) * 1000),
        )

    async def GetMetrics(
        self, request: gateway_pb2.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.GetMetricsResponse:
        window = request.window_seconds or DEFAULT_WINDOW_S
        now = self.clock.timestamp()
        total, routes = self.traffic.window(now, window, request.route_prefix)
        active = self.traffic.active_connections
        return gateway_pb2.GetMetricsResponse(
            window=duration(window),
            sample_time=timestamp(now),
            total=convert.route_metrics(total, active),
            routes=[convert.route_metrics(r, 0) for r in routes],
            active_connections=active,
        )

    async def ReportTraffic(
        self, request: gateway_pb2.ReportTrafficRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ReportTrafficResponse:
        now = self.clock.timestamp()
        self.traffic.report(
            convert.samples(request, now), request.edge_id, request.active_connections, now
        )
        return gateway_pb2.ReportTrafficResponse(accepted=len(request.samples))
