"""``lucid.admin.v1.AuditService``: the tamper-evident audit log over gRPC."""

from __future__ import annotations

import grpc

from lucid.admin import convert
from lucid.admin.auditlog import AuditLog, NewEntry
from lucid.admin.v1 import audit_pb2, audit_pb2_grpc
from lucid.runtime.audit import client_of
from lucid.runtime.paging import page
from lucid.runtime.wire import moment


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """Query, export, stats and verification of the audit chain."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    async def QueryAuditLogs(
        self, request: audit_pb2.QueryAuditLogsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.QueryAuditLogsResponse:
        where = convert.audit_filter(request)
        window = page(request)
        records, total = await self.log.query(where, window.offset, window.size)
        return audit_pb2.QueryAuditLogsResponse(
            entries=[convert.audit_entry(r) for r in records],
            next_page_token=window.next_token(len(records), total),
            total_size=total,
        )

    async def ExportAuditLogs(
        self, request: audit_pb2.ExportAuditLogsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.ExportAuditLogsResponse:
        fmt = convert.stored(audit_pb2.ExportFormat, "EXPORT_FORMAT_", request.format)
        export = await self.log.export(convert.audit_filter(request), fmt)
        client = client_of(context)
        await self.log.record(
            NewEntry.of(
                client,
                action="export",
                resource="audit",
                details={"format": fmt, "entries": export.count, "sha256": export.sha256},
                risk_level="medium",
            )
        )
        return convert.export_response(export)

    async def GetAuditStats(
        self, request: audit_pb2.GetAuditStatsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.GetAuditStatsResponse:
        stats = await self.log.stats(convert.audit_filter(request))
        return audit_pb2.GetAuditStatsResponse(**stats)

    async def VerifyAuditChain(
        self, request: audit_pb2.VerifyAuditChainRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.VerifyAuditChainResponse:
        start = moment(request.start_time) if request.HasField("start_time") else None
        end = moment(request.end_time) if request.HasField("end_time") else None
        return convert.verification(await self.log.verify(start, end))
