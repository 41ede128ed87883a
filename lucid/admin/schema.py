"""The admin cluster's collections and indexes (created idempotently at start).

``admin_audit_chain`` is the tamper-evident audit log: one document per entry,
``seq`` counting from 0 without gaps, each entry's ``entry_hash`` chaining to the
previous one. ``admin_state`` holds the system mode and the audit retention checkpoint;
``admin_emergency_logs`` the emergency actions; ``admin_config_history`` every
version of the system configuration; ``admin_console_roles`` the console roles and
``admin_console_assignments`` which user holds which (``_id`` = user id);
``admin_anchoring_ops`` the manual anchoring operations (AnchorSessions);
``admin_metric_samples`` what the dashboard saw at each overview (kept 30 days);
``admin_audit_anchors`` each anchoring of the audit chain's head on the chain, and
``admin_keys`` the sealed key that signs those anchorings.
"""

from __future__ import annotations

from lucid.runtime import keystore
from lucid.runtime.datastores import prefix
from lucid.runtime.schema import CollectionSpec, IndexSpec

AUDIT_CHAIN = "admin_audit_chain"
STATE = "admin_state"
EMERGENCY_LOGS = "admin_emergency_logs"
CONFIG_HISTORY = "admin_config_history"
ROLES = "admin_console_roles"
ASSIGNMENTS = "admin_console_assignments"
ANCHORING_OPS = "admin_anchoring_ops"
AUDIT_ANCHORS = "admin_audit_anchors"
KEYS = "admin_keys"
METRIC_SAMPLES = "admin_metric_samples"
METRIC_TTL_S = 30 * 24 * 3600

REDIS_PREFIX = prefix("admin")

COLLECTIONS = (
    CollectionSpec(
        AUDIT_CHAIN,
        (
            IndexSpec((("seq", 1),), "seq_unique", unique=True),
            IndexSpec((("event_time", 1),), "event_time"),
            IndexSpec((("user_id", 1), ("event_time", -1)), "user_time"),
            IndexSpec((("action", 1),), "action"),
            IndexSpec((("resource", 1),), "resource"),
            IndexSpec((("severity", 1),), "severity"),
        ),
        owner="admin",
    ),
    CollectionSpec(STATE, (), owner="admin"),
    CollectionSpec(
        EMERGENCY_LOGS,
        (IndexSpec((("event_time", -1),), "event_time"), IndexSpec((("action", 1),), "action")),
        owner="admin",
    ),
    CollectionSpec(ROLES, (IndexSpec((("name", 1),), "name_unique", unique=True),), owner="admin"),
    CollectionSpec(ASSIGNMENTS, (IndexSpec((("role_id", 1),), "role_id"),), owner="admin"),
    CollectionSpec(ANCHORING_OPS, (IndexSpec((("created_at", -1),), "created_at"),), owner="admin"),
    CollectionSpec(
        AUDIT_ANCHORS, (IndexSpec((("seq", -1),), "seq_unique", unique=True),), owner="admin"
    ),
    keystore.collection_spec(KEYS, owner="admin"),
    CollectionSpec(
        CONFIG_HISTORY,
        (IndexSpec((("version", 1),), "version_unique", unique=True),),
        owner="admin",
    ),
)
