"""``lucid.admin.v1.DashboardService``: the overview and detailed health.

Built: GetOverview, GetSystemHealth. GetMetrics and StreamDashboard answer
UNIMPLEMENTED (inherited from the generated base).
"""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.overview import Dashboard
from lucid.admin.v1 import dashboard_pb2, dashboard_pb2_grpc
from lucid.runtime.context import current_principal


class DashboardServicer(dashboard_pb2_grpc.DashboardServiceServicer):
    """The mesh at a glance."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def GetOverview(
        self, request: dashboard_pb2.GetOverviewRequest, context: grpc.aio.ServicerContext
    ) -> dashboard_pb2.GetOverviewResponse:
        view = await self.dashboard.overview(current_principal().token)
        return dashboard_pb2.GetOverviewResponse(overview=convert.overview(view))

    async def GetSystemHealth(
        self, request: dashboard_pb2.GetSystemHealthRequest, context: grpc.aio.ServicerContext
    ) -> dashboard_pb2.GetSystemHealthResponse:
        return convert.system_health(await self.dashboard.health())
