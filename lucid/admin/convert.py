"""Proto ↔ record mapping of the admin cluster; enums are stored as the lower-case
suffix of their proto name (``AUDIT_ACTION_EMERGENCY`` ↔ ``emergency``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict

from lucid.admin.auditlog import Export, Verification
from lucid.admin.clusters import ChainView, SessionLogLine, SessionView
from lucid.admin.configs import DEFAULTS, Backup, Change
from lucid.admin.live import Connected, LiveEvent, NodeChanged, SessionChanged
from lucid.admin.me import MeView
from lucid.admin.metrics import Series
from lucid.admin.nodes_link import FleetView, NodeView, Sample
from lucid.admin.overview import Dependency, Health, Overview
from lucid.admin.payments_link import PayoutView
from lucid.admin.session_views import console_state
from lucid.admin.store.anchoring_ops import AnchoringOpRecord
from lucid.admin.store.auditchain import AuditFilter, AuditRecord
from lucid.admin.store.config import ConfigRecord
from lucid.admin.store.emergency_logs import EmergencyLogRecord
from lucid.admin.store.roles import RoleRecord
from lucid.admin.store.state import ModeRecord
from lucid.admin.terminations import Termination
from lucid.admin.users import UserView
from lucid.admin.v1 import (
    admin_pb2,
    audit_pb2,
    config_pb2,
    dashboard_pb2,
    emergency_pb2,
    operations_pb2,
)
from lucid.common.v1 import access_pb2
from lucid.runtime.wire import moment, optional_timestamp, timestamp


def stored(enum: Any, prefix: str, value: int) -> str:
    """The stored name of an enum value ("" for UNSPECIFIED)."""
    if not value:
        return ""
    return str(enum.Name(value)).removeprefix(prefix).lower()


def wire(enum: Any, prefix: str, name: str) -> Any:
    """The enum value of a stored name (UNSPECIFIED if unknown)."""
    full = prefix + name.upper()
    known = enum.keys()  # an EnumTypeWrapper has no __contains__
    return enum.Value(full) if full in known else 0


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    """A Struct of plain JSON data."""
    return ParseDict(data, struct_pb2.Struct())


def audit_filter(request: Any) -> AuditFilter:
    """The filter of a QueryAuditLogs, ExportAuditLogs or GetAuditStats request."""
    fields = request.DESCRIPTOR.fields_by_name

    def enum(name: str, enum_type: Any, prefix: str) -> str:
        return stored(enum_type, prefix, getattr(request, name)) if name in fields else ""

    return AuditFilter(
        action=enum("action", audit_pb2.AuditAction, "AUDIT_ACTION_"),
        user_id=getattr(request, "user_id", ""),
        resource=enum("resource", audit_pb2.AuditResource, "AUDIT_RESOURCE_"),
        resource_id=getattr(request, "resource_id", ""),
        severity=enum("severity", audit_pb2.AuditSeverity, "AUDIT_SEVERITY_"),
        start=moment(request.start_time) if request.HasField("start_time") else None,
        end=moment(request.end_time) if request.HasField("end_time") else None,
    )


def audit_entry(record: AuditRecord) -> audit_pb2.AuditEntry:
    """An AuditEntry."""
    return audit_pb2.AuditEntry(
        entry_id=record.entry_id,
        event_time=timestamp(record.event_time),
        user_id=record.user_id,
        username=record.username,
        action=wire(audit_pb2.AuditAction, "AUDIT_ACTION_", record.action),
        resource=wire(audit_pb2.AuditResource, "AUDIT_RESOURCE_", record.resource),
        resource_id=record.resource_id,
        details=struct(record.details),
        ip_address=record.ip_address,
        user_agent=record.user_agent,
        severity=wire(audit_pb2.AuditSeverity, "AUDIT_SEVERITY_", record.severity),
        risk_level=wire(audit_pb2.RiskLevel, "RISK_LEVEL_", record.risk_level),
        result=wire(audit_pb2.AuditResult, "AUDIT_RESULT_", record.result),
        step_up_id=record.step_up_id,
        request_id=record.request_id,
        prev_hash=record.prev_hash,
        entry_hash=record.entry_hash,
    )


def export_response(export: Export) -> audit_pb2.ExportAuditLogsResponse:
    """An ExportAuditLogsResponse."""
    return audit_pb2.ExportAuditLogsResponse(
        content=export.content,
        content_type=export.content_type,
        file_name=export.file_name,
        entry_count=export.count,
        sha256=export.sha256,
    )


def verification(result: Verification) -> audit_pb2.VerifyAuditChainResponse:
    """A VerifyAuditChainResponse."""
    return audit_pb2.VerifyAuditChainResponse(
        valid=result.valid,
        checked_count=result.checked,
        first_invalid_entry_id=result.first_invalid_entry_id,
        message=result.message,
    )


def mode_status(record: ModeRecord) -> emergency_pb2.SystemModeStatus:
    """A SystemModeStatus."""
    lockdown = record.mode == "lockdown"
    return emergency_pb2.SystemModeStatus(
        mode=wire(emergency_pb2.SystemMode, "SYSTEM_MODE_", record.mode),
        new_sessions_allowed=record.mode == "normal",
        payouts_frozen=lockdown,
        admin_only=lockdown,
        reason=record.reason,
        since_time=optional_timestamp(record.since),
        auto_revert_time=optional_timestamp(record.auto_revert_at),
        set_by_user_id=record.set_by,
    )


def emergency_log(record: EmergencyLogRecord) -> emergency_pb2.EmergencyLog:
    """An EmergencyLog."""
    return emergency_pb2.EmergencyLog(
        log_id=record.log_id,
        action=wire(emergency_pb2.EmergencyAction, "EMERGENCY_ACTION_", record.action),
        reason=record.reason,
        user_id=record.user_id,
        event_time=timestamp(record.event_time),
        status=wire(emergency_pb2.EmergencyLogStatus, "EMERGENCY_LOG_STATUS_", record.status),
        details=struct(record.details),
    )


def admin_session(view: SessionView) -> operations_pb2.AdminSession:
    """An AdminSession."""
    state = console_state(view)
    return operations_pb2.AdminSession(
        session_id=view.session_id,
        user_id=view.owner_user_id,
        name=view.name,
        state=wire(admin_pb2.AdminSessionState, "ADMIN_SESSION_STATE_", state),
        kind="recording",
        start_time=optional_timestamp(view.start_time),
        last_activity_time=optional_timestamp(view.last_activity_time),
        server_id=view.server_id,
    )


def termination(result: Termination) -> operations_pb2.SessionTerminationResult:
    """A SessionTerminationResult."""
    return operations_pb2.SessionTerminationResult(
        session_id=result.session_id,
        success=result.success,
        error_code=result.error_code,
        message=result.message,
    )


def config_values(config: config_pb2.SystemConfig) -> dict[str, Any]:
    """The configuration fields of a SystemConfig."""
    return {name: getattr(config, name) for name in DEFAULTS}


def system_config(record: ConfigRecord) -> config_pb2.SystemConfig:
    """A SystemConfig."""
    return config_pb2.SystemConfig(
        **record.values,
        update_time=optional_timestamp(record.updated_at),
        updated_by_user_id=record.updated_by,
    )


def config_changes(changes: list[Change]) -> list[config_pb2.ConfigChange]:
    """ConfigChanges."""
    return [
        config_pb2.ConfigChange(field=c.field, old_value=str(c.old), new_value=str(c.new))
        for c in changes
    ]


def config_backup(backup: Backup) -> config_pb2.ConfigBackup:
    """A ConfigBackup."""
    return config_pb2.ConfigBackup(
        backup_id=backup.backup_id,
        config=config_pb2.SystemConfig(**backup.values),
        sha256=backup.sha256,
        create_time=timestamp(backup.created_at),
    )


def session_details(view: SessionView) -> operations_pb2.GetSessionDetailsResponse:
    """A GetSessionDetailsResponse."""
    return operations_pb2.GetSessionDetailsResponse(
        session=admin_session(view),
        recording_state=view.state,
        chunk_count=view.chunk_count,
        size_bytes=view.size_bytes,
        merkle_root=view.merkle_root,
        anchor_tx_hash=view.anchor_tx_hash,
        anchor_block_height=view.anchor_block_height,
        end_time=optional_timestamp(view.end_time),
    )


PERMISSION_PREFIX = "CONSOLE_PERMISSION_"


def console_role(role: RoleRecord, user_count: int) -> admin_pb2.ConsoleRole:
    """A ConsoleRole."""
    return admin_pb2.ConsoleRole(
        role_id=role.role_id,
        name=role.name,
        description=role.description,
        permissions=[
            wire(admin_pb2.ConsolePermission, PERMISSION_PREFIX, p) for p in role.permissions
        ],
        is_system=role.is_system,
        user_count=user_count,
        create_time=timestamp(role.created_at),
        update_time=timestamp(role.updated_at),
    )


def me(view: MeView, user_count: int) -> admin_pb2.GetMeResponse:
    """A GetMeResponse."""
    role = console_role(view.console_role, user_count) if view.console_role else None
    return admin_pb2.GetMeResponse(
        user_id=view.profile.user_id,
        tron_address=view.profile.tron_address,
        username=view.profile.username,
        role=access_pb2.Role.ValueType(view.profile.role),
        console_role=role,
        permissions=role.permissions if role else [],
        totp_enabled=view.profile.totp_enabled,
        step_up_expire_time=optional_timestamp(view.step_up_expires_at),
    )


def permission_names(values: Any) -> list[str]:
    """Stored names of ConsolePermission values."""
    return [stored(admin_pb2.ConsolePermission, PERMISSION_PREFIX, v) for v in values]


def permission_infos() -> list[admin_pb2.ConsolePermissionInfo]:
    """Every console permission."""
    return [
        admin_pb2.ConsolePermissionInfo(
            permission=admin_pb2.ConsolePermission.ValueType(value.number),
            name=value.name.removeprefix(PERMISSION_PREFIX).lower(),
            description=value.name.removeprefix(PERMISSION_PREFIX).lower().replace("_", " "),
        )
        for value in admin_pb2.ConsolePermission.DESCRIPTOR.values
        if value.number
    ]


def health_status(name: str) -> Any:
    """A HealthStatus value."""
    return wire(admin_pb2.HealthStatus, "HEALTH_STATUS_", name)


def system_health(health: Health) -> dashboard_pb2.GetSystemHealthResponse:
    """A GetSystemHealthResponse."""
    return dashboard_pb2.GetSystemHealthResponse(
        status=health_status(health.status),
        version=health.version,
        uptime_seconds=health.uptime_s,
        cpu_percent=health.resources.cpu_percent,
        memory_percent=health.resources.memory_percent,
        dependencies=[
            dashboard_pb2.DependencyHealth(
                name=d.name,
                cluster=access_pb2.Cluster.Value(f"CLUSTER_{d.name.upper()}"),
                status=health_status(d.status),
                latency_ms=d.latency_ms,
                message=d.message,
                check_time=timestamp(d.checked_at),
            )
            for d in health.dependencies
        ],
    )


SYNC = {"healthy": "synced", "syncing": "syncing"}


def blockchain_status(chain: ChainView) -> admin_pb2.BlockchainStatus:
    """A BlockchainStatus."""
    return admin_pb2.BlockchainStatus(
        network_height=chain.network_height,
        local_height=chain.local_height,
        sync_status=wire(admin_pb2.SyncStatus, "SYNC_STATUS_", SYNC.get(chain.state, "behind")),
        pending_transactions=chain.pending_transactions,
        last_block_time=optional_timestamp(chain.latest_block_time),
    )


def overview(view: Overview) -> dashboard_pb2.SystemOverview:
    """A SystemOverview."""
    health, used, chain = view.health, view.health.resources, view.chain
    blockchain = blockchain_status(chain) if chain else admin_pb2.BlockchainStatus()
    return dashboard_pb2.SystemOverview(
        system_status=dashboard_pb2.SystemStatus(
            status=health_status(health.status),
            uptime_seconds=health.uptime_s,
            version=health.version,
            update_time=timestamp(health.checked_at),
        ),
        active_sessions=dashboard_pb2.SessionSummary(
            total=view.sessions_active + view.sessions_idle,
            active=view.sessions_active,
            idle=view.sessions_idle,
            by_type={"recording": view.sessions_active + view.sessions_idle},
        ),
        node_status=node_summary(view.nodes),
        blockchain_status=blockchain,
        resource_usage=dashboard_pb2.ResourceUsageSummary(
            cpu_percent=used.cpu_percent,
            memory_percent=used.memory_percent,
            disk_percent=used.disk_percent,
            network_in_bytes=used.network_in_bytes,
            network_out_bytes=used.network_out_bytes,
        ),
    )


def admin_node(view: NodeView) -> operations_pb2.AdminNode:
    """An AdminNode (resource figures from its latest sample, if known)."""
    node = operations_pb2.AdminNode(
        node_id=view.node_id,
        hostname=view.name,
        state=wire(admin_pb2.AdminNodeState, "ADMIN_NODE_STATE_", view.state),
        last_heartbeat_time=optional_timestamp(view.last_heartbeat),
        pool_id=view.pool_id,
        node_type=view.node_type,
    )
    if view.sample is not None:
        node.load_average = view.sample.load_average
        node.cpu_percent = view.sample.cpu_percent
        node.memory_percent = view.sample.memory_percent
        node.disk_percent = view.sample.disk_percent
        node.active_sessions = view.sample.active_sessions
    return node


def node_metric_point(sample: Sample) -> operations_pb2.NodeMetricPoint:
    """A NodeMetricPoint."""
    return operations_pb2.NodeMetricPoint(
        point_time=optional_timestamp(sample.at),
        cpu_percent=sample.cpu_percent,
        memory_percent=sample.memory_percent,
        disk_percent=sample.disk_percent,
        network_in_bytes_per_second=sample.network_in,
        network_out_bytes_per_second=sample.network_out,
        load_average=sample.load_average,
    )


def node_summary(fleet: FleetView | None) -> dashboard_pb2.NodeSummary:
    """A NodeSummary (empty when the nodes cluster did not answer)."""
    if fleet is None:
        return dashboard_pb2.NodeSummary()
    return dashboard_pb2.NodeSummary(
        total_nodes=fleet.total,
        online_nodes=fleet.online,
        offline_nodes=fleet.offline,
        maintenance_nodes=fleet.maintenance,
        load_average=fleet.load_average,
    )


def admin_payout(view: PayoutView) -> operations_pb2.AdminPayout:
    """An AdminPayout (USDT, the one currency)."""
    return operations_pb2.AdminPayout(
        payout_id=view.payout_id,
        user_id=view.user_id,
        node_id=view.node_id,
        recipient_address=view.recipient_address,
        amount_micros=view.amount_micros,
        currency=operations_pb2.PAYOUT_CURRENCY_USDT,
        state=wire(operations_pb2.PayoutState, "PAYOUT_STATE_", view.state),
        tx_hash=view.tx_hash,
        confirmations=view.confirmations,
        reason=view.reason,
        requested_by_user_id=view.requested_by_user_id,
        error_message=view.error_message,
        create_time=optional_timestamp(view.created_at),
        update_time=optional_timestamp(view.updated_at),
    )


def anchoring_operation(op: AnchoringOpRecord) -> operations_pb2.AnchoringOperation:
    """An AnchoringOperation."""
    return operations_pb2.AnchoringOperation(
        operation_id=op.operation_id,
        session_ids=op.session_ids,
        priority=wire(operations_pb2.AnchoringPriority, "ANCHORING_PRIORITY_", op.priority),
        state=wire(operations_pb2.AnchoringState, "ANCHORING_STATE_", op.state),
        tx_hash=op.tx_hash,
        block_height=op.block_height,
        error_message=op.error_message,
        requested_by_user_id=op.requested_by,
        create_time=timestamp(op.created_at),
        finish_time=optional_timestamp(op.finished_at),
    )


def live_event(event: LiveEvent, at: datetime) -> dashboard_pb2.StreamDashboardResponse:
    """A StreamDashboardResponse."""
    out = dashboard_pb2.StreamDashboardResponse(
        event_type=wire(dashboard_pb2.DashboardEventType, "DASHBOARD_EVENT_TYPE_", event.kind),
        event_time=timestamp(at),
    )
    data = event.data
    if isinstance(data, Connected):
        out.connection_established.stream_id = data.stream_id
        out.connection_established.interval_seconds = data.interval_s
    elif isinstance(data, Overview):
        shown = overview(data)
        out.metric_update.resource_usage.CopyFrom(shown.resource_usage)
        out.metric_update.sessions.CopyFrom(shown.active_sessions)
    elif isinstance(data, Dependency):
        out.system_alert.severity = health_status(data.status)
        out.system_alert.component = data.name
        out.system_alert.message = data.message
    elif isinstance(data, SessionChanged):
        out.session_change.session_id = data.session_id
        out.session_change.user_id = data.user_id
        out.session_change.state = wire(
            admin_pb2.AdminSessionState, "ADMIN_SESSION_STATE_", data.state
        )
        out.session_change.kind = data.kind
    elif isinstance(data, NodeChanged):
        out.node_status_change.node_id = data.node_id
        out.node_status_change.state = wire(
            admin_pb2.AdminNodeState, "ADMIN_NODE_STATE_", data.state
        )
        out.node_status_change.previous_state = wire(
            admin_pb2.AdminNodeState, "ADMIN_NODE_STATE_", data.previous
        )
    elif isinstance(data, ChainView):
        out.blockchain_update.CopyFrom(blockchain_status(data))
    return out


def session_log_entry(line: SessionLogLine) -> operations_pb2.SessionLogEntry:
    """A SessionLogEntry."""
    return operations_pb2.SessionLogEntry(
        log_time=optional_timestamp(line.at),
        level=line.level,
        source=line.source,
        message=line.message,
    )


def admin_user(view: UserView) -> admin_pb2.AdminUser:
    """An AdminUser."""
    return admin_pb2.AdminUser(
        user_id=view.user_id,
        tron_address=view.tron_address,
        username=view.username,
        email=view.email,
        role=access_pb2.Role.ValueType(view.role),
        status=wire(admin_pb2.AdminUserStatus, "ADMIN_USER_STATUS_", view.status),
        kyc_status=access_pb2.KycStatus.ValueType(view.kyc_status),
        console_role_id=view.console_role_id,
        create_time=optional_timestamp(view.created_at),
        last_login_time=optional_timestamp(view.last_login_at),
    )


def metric_series(series: Series, metric: Any, timeframe: Any) -> dashboard_pb2.GetMetricsResponse:
    """A GetMetricsResponse (the timeframe as asked, 1h if not given)."""
    return dashboard_pb2.GetMetricsResponse(
        metric=metric,
        timeframe=timeframe or admin_pb2.TIMEFRAME_1H,
        unit=series.unit,
        points=[
            dashboard_pb2.MetricPoint(point_time=timestamp(t), value=v) for t, v in series.points
        ],
        min=series.low,
        max=series.high,
        average=series.average,
    )
