"""Proto ↔ record mapping of the ResourceService contract."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lucid.rdp.records import Alert, Limits, Sample
from lucid.rdp.v1 import rdp_pb2, resource_pb2
from lucid.runtime import wire

RANGE_S = {
    rdp_pb2.TIME_RANGE_UNSPECIFIED: 3600,
    rdp_pb2.TIME_RANGE_1H: 3600,
    rdp_pb2.TIME_RANGE_6H: 6 * 3600,
    rdp_pb2.TIME_RANGE_24H: 24 * 3600,
    rdp_pb2.TIME_RANGE_7D: 7 * 24 * 3600,
}
_FIELDS = (
    "cpu_percent",
    "memory_percent",
    "memory_mb",
    "disk_percent",
    "disk_mb",
    "net_in_kbps",
    "net_out_kbps",
)


def sample(record: Sample) -> rdp_pb2.ResourceSample:
    """A sample message."""
    return rdp_pb2.ResourceSample(
        sample_time=wire.timestamp(record.time),
        cpu_percent=record.cpu_percent,
        memory_percent=record.memory_percent,
        memory_mb=record.memory_mb,
        disk_percent=record.disk_percent,
        disk_mb=record.disk_mb,
        network_in_kbps=record.net_in_kbps,
        network_out_kbps=record.net_out_kbps,
    )


def _combine(samples: Sequence[Sample], how: Any) -> rdp_pb2.ResourceSample:
    values = {name: how([getattr(s, name) for s in samples]) for name in _FIELDS}
    return rdp_pb2.ResourceSample(
        sample_time=wire.timestamp(samples[-1].time.timestamp()),
        cpu_percent=values["cpu_percent"],
        memory_percent=values["memory_percent"],
        memory_mb=values["memory_mb"],
        disk_percent=values["disk_percent"],
        disk_mb=values["disk_mb"],
        network_in_kbps=values["net_in_kbps"],
        network_out_kbps=values["net_out_kbps"],
    )


def usage(
    samples: Sequence[Sample], *, server_id: str = "", session_id: str = ""
) -> resource_pb2.ResourceUsage:
    """Current, average, peak and the samples themselves."""
    out = resource_pb2.ResourceUsage(server_id=server_id, session_id=session_id)
    if samples:
        out.current.CopyFrom(sample(samples[-1]))
        out.average.CopyFrom(_combine(samples, lambda v: sum(v) / len(v)))
        out.peak.CopyFrom(_combine(samples, max))
        out.samples.extend(sample(s) for s in samples)
    return out


def limits(record: Limits) -> resource_pb2.ResourceLimits:
    """A limits message."""
    out = resource_pb2.ResourceLimits(
        per_server=resource_pb2.ServerLimits(
            cpu_percent=record.server_cpu_percent,
            memory_mb=record.server_memory_mb,
            disk_mb=record.server_disk_mb,
            bandwidth_mbps=record.server_bandwidth_mbps,
        ),
        per_session=resource_pb2.SessionLimits(
            cpu_percent=record.session_cpu_percent,
            memory_mb=record.session_memory_mb,
            bandwidth_mbps=record.session_bandwidth_mbps,
            max_duration_seconds=record.session_max_duration_s,
        ),
        thresholds=resource_pb2.AlertThresholds(
            cpu_percent=record.cpu_threshold,
            memory_percent=record.memory_threshold,
            disk_percent=record.disk_threshold,
            network_mbps=record.network_threshold_mbps,
        ),
    )
    getattr(out, "global").CopyFrom(
        resource_pb2.GlobalLimits(
            max_servers=record.max_servers,
            max_sessions=record.max_sessions,
            cpu_percent=record.total_cpu_percent,
            memory_percent=record.total_memory_percent,
            disk_percent=record.total_disk_percent,
        )
    )
    if record.updated_at:
        out.update_time.CopyFrom(wire.timestamp(record.updated_at))
    return out


def limit_changes(request: resource_pb2.UpdateResourceLimitsRequest) -> dict[str, float]:
    """The limits an update sets (zero fields keep their values)."""
    overall = getattr(request, "global")
    pairs = {
        "max_servers": overall.max_servers,
        "max_sessions": overall.max_sessions,
        "total_cpu_percent": overall.cpu_percent,
        "total_memory_percent": overall.memory_percent,
        "total_disk_percent": overall.disk_percent,
        "server_cpu_percent": request.per_server.cpu_percent,
        "server_memory_mb": request.per_server.memory_mb,
        "server_disk_mb": request.per_server.disk_mb,
        "server_bandwidth_mbps": request.per_server.bandwidth_mbps,
        "session_cpu_percent": request.per_session.cpu_percent,
        "session_memory_mb": request.per_session.memory_mb,
        "session_bandwidth_mbps": request.per_session.bandwidth_mbps,
        "session_max_duration_s": request.per_session.max_duration_seconds,
        "cpu_threshold": request.thresholds.cpu_percent,
        "memory_threshold": request.thresholds.memory_percent,
        "disk_threshold": request.thresholds.disk_percent,
        "network_threshold_mbps": request.thresholds.network_mbps,
    }
    return {k: v for k, v in pairs.items() if v}


SEVERITIES = {"medium": 2, "high": 3, "critical": 4, "low": 1}
TYPES = {"cpu": 1, "memory": 2, "disk": 3, "network": 4}


def severity_name(value: int) -> str:
    """``ALERT_SEVERITY_HIGH`` → ``high`` ("" for unspecified)."""
    return next((k for k, v in SEVERITIES.items() if v == value), "")


def type_name(value: int) -> str:
    """``RESOURCE_TYPE_CPU`` → ``cpu`` ("" for unspecified)."""
    return next((k for k, v in TYPES.items() if v == value), "")


def alert(record: Alert) -> resource_pb2.ResourceAlert:
    """An alert message."""
    out = resource_pb2.ResourceAlert(
        alert_id=record.alert_id,
        server_id=record.server_id,
        session_id=record.session_id,
        severity=SEVERITIES[record.severity],  # type: ignore[arg-type]
        resource_type=TYPES[record.resource_type],  # type: ignore[arg-type]
        threshold=record.threshold,
        current_value=record.current_value,
        message=record.message,
        create_time=wire.timestamp(record.created_at),
        resolved=record.resolved,
        resolved_by_user_id=record.resolved_by,
    )
    if record.resolved_at:
        out.resolve_time.CopyFrom(wire.timestamp(record.resolved_at))
    return out
