"""ResourceService: usage, limits and alerts (spec 04 §2, §4.4), proto ↔ ``Resources``."""

from __future__ import annotations

from typing import TypeAlias

import grpc

from lucid.rdp import convert_resources as convert
from lucid.rdp.limits import CallLimits
from lucid.rdp.resources import Resources
from lucid.rdp.usage import UsageReports
from lucid.rdp.v1 import resource_pb2, resource_pb2_grpc
from lucid.runtime import paging

Context: TypeAlias = grpc.aio.ServicerContext


class ResourceServicer(resource_pb2_grpc.ResourceServiceServicer):
    """Resources: usage of the host, a server and its sessions; limits; alerts."""

    def __init__(self, resources: Resources, reports: UsageReports, calls: CallLimits) -> None:
        self.calls = calls
        self.resources = resources
        self.reports = reports

    async def GetResourceUsage(
        self, request: resource_pb2.GetResourceUsageRequest, context: Context
    ) -> resource_pb2.GetResourceUsageResponse:
        report = await self.reports.report(
            await self.calls.actor("resources"),
            server_id=request.server_id,
            session_id=request.session_id,
            seconds=convert.RANGE_S[request.time_range],
        )
        response = resource_pb2.GetResourceUsageResponse(system=convert.usage(report.system))
        if report.server_id:
            response.server.CopyFrom(convert.usage(report.server, server_id=report.server_id))
        response.sessions.extend(
            convert.usage(samples, server_id=report.server_id, session_id=session_id)
            for session_id, samples in report.sessions
        )
        return response

    async def GetResourceLimits(
        self, request: resource_pb2.GetResourceLimitsRequest, context: Context
    ) -> resource_pb2.GetResourceLimitsResponse:
        await self.calls.actor("resources")
        return resource_pb2.GetResourceLimitsResponse(
            limits=convert.limits(await self.resources.limits())
        )

    async def UpdateResourceLimits(
        self, request: resource_pb2.UpdateResourceLimitsRequest, context: Context
    ) -> resource_pb2.UpdateResourceLimitsResponse:
        updated = await self.resources.update_limits(
            await self.calls.actor("resources"), convert.limit_changes(request)
        )
        return resource_pb2.UpdateResourceLimitsResponse(limits=convert.limits(updated))

    async def ListResourceAlerts(
        self, request: resource_pb2.ListResourceAlertsRequest, context: Context
    ) -> resource_pb2.ListResourceAlertsResponse:
        who = await self.calls.actor("resources")
        page = paging.page(request, scope=who.user_id)
        alerts, total = await self.resources.alerts(
            who,
            severity=convert.severity_name(request.severity),
            resolved=request.resolved if request.HasField("resolved") else None,
            server_id=request.server_id,
            resource_type=convert.type_name(request.resource_type),
            offset=page.offset,
            limit=page.size,
        )
        return resource_pb2.ListResourceAlertsResponse(
            alerts=[convert.alert(a) for a in alerts],
            next_page_token=page.next_token(len(alerts), total),
            total_size=total,
        )

    async def ResolveResourceAlert(
        self, request: resource_pb2.ResolveResourceAlertRequest, context: Context
    ) -> resource_pb2.ResolveResourceAlertResponse:
        resolved = await self.resources.resolve(
            await self.calls.actor("resources"), request.alert_id, request.note
        )
        return resource_pb2.ResolveResourceAlertResponse(alert=convert.alert(resolved))
