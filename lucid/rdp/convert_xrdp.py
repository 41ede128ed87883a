"""Proto ↔ record mapping of the XrdpService contract."""

from __future__ import annotations

from typing import Any

from lucid.rdp.records import XrdpSettings
from lucid.rdp.v1 import xrdp_pb2
from lucid.rdp.xrdp import DaemonStatus
from lucid.runtime import wire

AUTH = {"password": 1, "certificate": 2, "both": 3}
LEVELS = {"low": 1, "medium": 2, "high": 3, "fips": 4}


def _name(table: dict[str, int], value: int) -> str:
    return next(k for k, v in table.items() if v == value)


def config(settings: XrdpSettings) -> xrdp_pb2.XrdpConfig:
    """A settings message."""
    out = xrdp_pb2.XrdpConfig(
        security=xrdp_pb2.XrdpSecuritySettings(
            auth_method=AUTH[settings.auth_method],  # type: ignore[arg-type]
            encryption_level=LEVELS[settings.encryption_level],  # type: ignore[arg-type]
            tls_protocols=list(settings.tls_protocols),
            max_login_attempts=settings.max_login_attempts,
            login_timeout_seconds=settings.login_timeout_s,
        ),
        performance=xrdp_pb2.XrdpPerformanceSettings(
            compression_enabled=settings.compression,
            bitmap_cache_enabled=settings.bitmap_cache,
            glyph_cache_enabled=settings.glyph_cache,
            bitmap_cache_size_bytes=settings.bitmap_cache_bytes,
        ),
        updated_by_user_id=settings.updated_by,
    )
    getattr(out, "global").CopyFrom(
        xrdp_pb2.XrdpGlobalSettings(
            port=settings.port,
            ssl_enabled=settings.ssl_enabled,
            max_connections=settings.max_connections,
            session_timeout_seconds=settings.session_timeout_s,
            idle_timeout_seconds=settings.idle_timeout_s,
        )
    )
    if settings.updated_at:
        out.update_time.CopyFrom(wire.timestamp(settings.updated_at))
    return out


def _global_changes(overall: xrdp_pb2.XrdpGlobalSettings) -> dict[str, Any]:
    out: dict[str, Any] = {
        name: value
        for name, value in (
            ("port", overall.port),
            ("max_connections", overall.max_connections),
            ("session_timeout_s", overall.session_timeout_seconds),
            ("idle_timeout_s", overall.idle_timeout_seconds),
        )
        if value
    }
    if overall.HasField("ssl_enabled"):
        out["ssl_enabled"] = overall.ssl_enabled
    return out


def _security_changes(security: xrdp_pb2.XrdpSecuritySettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if security.auth_method:
        out["auth_method"] = _name(AUTH, security.auth_method)
    if security.encryption_level:
        out["encryption_level"] = _name(LEVELS, security.encryption_level)
    if security.tls_protocols:
        out["tls_protocols"] = tuple(security.tls_protocols)
    if security.max_login_attempts:
        out["max_login_attempts"] = security.max_login_attempts
    if security.login_timeout_seconds:
        out["login_timeout_s"] = security.login_timeout_seconds
    return out


def _performance_changes(performance: xrdp_pb2.XrdpPerformanceSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in (
        ("compression", "compression_enabled"),
        ("bitmap_cache", "bitmap_cache_enabled"),
        ("glyph_cache", "glyph_cache_enabled"),
    ):
        if performance.HasField(field):  # type: ignore[arg-type]
            out[name] = getattr(performance, field)
    if performance.bitmap_cache_size_bytes:
        out["bitmap_cache_bytes"] = performance.bitmap_cache_size_bytes
    return out


def changes(request: xrdp_pb2.UpdateXrdpConfigRequest) -> dict[str, Any]:
    """The settings an update sets (absent sections and zero fields keep theirs)."""
    out: dict[str, Any] = {}
    if request.HasField("global"):
        out |= _global_changes(getattr(request, "global"))
    if request.HasField("security"):
        out |= _security_changes(request.security)
    if request.HasField("performance"):
        out |= _performance_changes(request.performance)
    return out


def status(state: DaemonStatus) -> xrdp_pb2.XrdpStatus:
    """A status message."""
    return xrdp_pb2.XrdpStatus(
        state=xrdp_pb2.XRDP_SERVICE_STATE_RUNNING
        if state.running
        else xrdp_pb2.XRDP_SERVICE_STATE_STOPPED,
        uptime_seconds=int(state.uptime_s),
        active_connections=state.connections,
        version=state.version,
        pid=state.pid,
        port=state.port,
    )
