"""The rdp cluster's collections and indexes (created idempotently at start).

Servers, sessions and audit events use their UUID as ``_id``. Listener ports are
claimed in ``rdp_port_claims`` whose ``_id`` is the port: the insert is the atomic
allocation (a second claim of the same port fails on the primary key), and the
delete on server deletion releases it. Redis keys are prefixed ``lucid:rdp:``.
"""

from __future__ import annotations

from lucid.runtime.datastores import prefix
from lucid.runtime.schema import CollectionSpec, IndexSpec

SERVERS = "rdp_servers"
PORT_CLAIMS = "rdp_port_claims"
SESSIONS = "rdp_sessions"
AUDIT = "rdp_audit_logs"
METRICS = "rdp_resource_metrics"
ALERTS = "rdp_resource_alerts"
SETTINGS = "rdp_settings"
"""Single documents: the resource limits (``_id`` ``limits``) and the xrdp daemon
settings (``_id`` ``xrdp``)."""
REDIS_PREFIX = prefix("rdp")

AUDIT_RETENTION_S = 365 * 24 * 3600
METRICS_RETENTION_S = 604800
"""Resource samples are kept 7 days (spec 04 §3)."""
"""Audit events are kept one year (spec 04 §5)."""

COLLECTIONS = (
    CollectionSpec(
        SERVERS,
        (
            IndexSpec((("user_id", 1), ("created_at", -1)), "user_created"),
            IndexSpec((("state", 1),), "state"),
        ),
        owner="rdp",
    ),
    CollectionSpec(PORT_CLAIMS, (IndexSpec((("server_id", 1),), "server_id"),), owner="rdp"),
    CollectionSpec(
        SESSIONS,
        (
            IndexSpec((("server_id", 1), ("state", 1)), "server_state"),
            IndexSpec((("user_id", 1), ("created_at", -1)), "user_created"),
            IndexSpec((("state", 1), ("last_activity", 1)), "state_activity"),
        ),
        owner="rdp",
    ),
    CollectionSpec(
        METRICS,
        (
            IndexSpec((("time", 1),), "time_ttl", ttl_seconds=METRICS_RETENTION_S),
            IndexSpec((("scope", 1), ("subject_id", 1), ("time", -1)), "subject_time"),
        ),
        owner="rdp",
    ),
    CollectionSpec(
        ALERTS,
        (
            IndexSpec((("resolved", 1), ("created_at", -1)), "resolved_created"),
            IndexSpec((("server_id", 1), ("resource_type", 1), ("resolved", 1)), "server_type"),
        ),
        owner="rdp",
    ),
    CollectionSpec(SETTINGS, (), owner="rdp"),
    CollectionSpec(
        AUDIT,
        (
            IndexSpec((("event_time", 1),), "event_time_ttl", ttl_seconds=AUDIT_RETENTION_S),
            IndexSpec((("action", 1), ("event_time", -1)), "action_time"),
        ),
        owner="rdp",
    ),
)
