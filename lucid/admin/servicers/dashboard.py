"""``lucid.admin.v1.DashboardService``: the overview and detailed health.

GetOverview, GetSystemHealth, GetMetrics (the history of what the overviews saw) and
StreamDashboard.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from lucid.admin import convert
from lucid.admin.live import Live
from lucid.admin.metrics import Metrics
from lucid.admin.overview import Dashboard
from lucid.admin.v1 import admin_pb2, dashboard_pb2, dashboard_pb2_grpc
from lucid.runtime.context import current_principal


class DashboardServicer(dashboard_pb2_grpc.DashboardServiceServicer):
    """The mesh at a glance."""

    def __init__(self, dashboard: Dashboard, live: Live, metrics: Metrics) -> None:
        self.dashboard = dashboard
        self.live = live
        self.metrics = metrics

    async def GetMetrics(
        self, request: dashboard_pb2.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> dashboard_pb2.GetMetricsResponse:
        metric = convert.stored(dashboard_pb2.DashboardMetric, "DASHBOARD_METRIC_", request.metric)
        timeframe = convert.stored(admin_pb2.Timeframe, "TIMEFRAME_", request.timeframe)
        series = await self.metrics.series(metric, timeframe)
        return convert.metric_series(series, request.metric, request.timeframe)

    async def StreamDashboard(
        self, request: dashboard_pb2.StreamDashboardRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dashboard_pb2.StreamDashboardResponse]:
        kinds = frozenset(
            convert.stored(dashboard_pb2.DashboardEventType, "DASHBOARD_EVENT_TYPE_", t)
            for t in request.event_types
        )
        token = current_principal().token
        async for event in self.live.events(kinds, request.interval_seconds, token):
            yield convert.live_event(event, self.dashboard.clock.now())

    async def GetOverview(
        self, request: dashboard_pb2.GetOverviewRequest, context: grpc.aio.ServicerContext
    ) -> dashboard_pb2.GetOverviewResponse:
        view = await self.dashboard.overview(current_principal().token)
        return dashboard_pb2.GetOverviewResponse(overview=convert.overview(view))

    async def GetSystemHealth(
        self, request: dashboard_pb2.GetSystemHealthRequest, context: grpc.aio.ServicerContext
    ) -> dashboard_pb2.GetSystemHealthResponse:
        return convert.system_health(await self.dashboard.health())
