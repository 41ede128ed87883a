"""The auth cluster's collections and indexes (created idempotently at start).

Optional unique fields (username, e-mail) are not unique indexes: FerretDB ignores
``sparse``, so every user without an e-mail would collide. They are claimed in
``auth_user_claims`` instead, whose ``_id`` is the claimed value. Users, login
sessions, ownership records and wallets use their UUID (or device id) as ``_id``.
"""

from __future__ import annotations

from lucid.auth import keystore
from lucid.runtime.schema import CollectionSpec, IndexSpec

USERS = "users"
USER_CLAIMS = "auth_user_claims"
SESSIONS = "auth_sessions"
MAGIC_LINKS = "auth_magic_links"
OUTBOX = "auth_outbox"
AUDIT = "auth_audit_events"
OWNERSHIP = "auth_session_ownership"
HARDWARE_WALLETS = "auth_hardware_wallets"

AUDIT_RETENTION_S = 90 * 24 * 3600
"""Audit events are kept 90 days (spec 09 §5)."""
OUTBOX_RETENTION_S = 24 * 3600

COLLECTIONS = (
    keystore.SCHEMA,
    CollectionSpec(
        USERS,
        (
            IndexSpec((("tron_address", 1),), "tron_address_unique", unique=True),
            IndexSpec((("email", 1),), "email"),
            IndexSpec((("role", 1),), "role"),
            IndexSpec((("created_at", 1),), "created_at"),
        ),
        owner="auth",
    ),
    CollectionSpec(USER_CLAIMS, (IndexSpec((("user_id", 1),), "user_id"),), owner="auth"),
    CollectionSpec(
        SESSIONS,
        (
            IndexSpec((("user_id", 1), ("revoked", 1), ("created_at", 1)), "user_active"),
            IndexSpec((("revoked", 1),), "revoked"),
            IndexSpec((("expires_at", 1),), "expires_at_ttl", ttl_seconds=0),
        ),
        owner="auth",
    ),
    CollectionSpec(
        MAGIC_LINKS,
        (IndexSpec((("expires_at", 1),), "expires_at_ttl", ttl_seconds=3600),),
        owner="auth",
    ),
    CollectionSpec(
        OUTBOX,
        (
            IndexSpec((("to", 1), ("created_at", -1)), "to_created"),
            IndexSpec((("created_at", 1),), "created_at_ttl", ttl_seconds=OUTBOX_RETENTION_S),
        ),
        owner="auth",
    ),
    CollectionSpec(
        AUDIT,
        (
            IndexSpec((("event_time", 1),), "event_time_ttl", ttl_seconds=AUDIT_RETENTION_S),
            IndexSpec((("user_id", 1), ("event_time", -1)), "user_time"),
            IndexSpec((("action", 1), ("event_time", -1)), "action_time"),
        ),
        owner="auth",
    ),
    CollectionSpec(OWNERSHIP, (), owner="auth"),
    CollectionSpec(
        HARDWARE_WALLETS,
        (IndexSpec((("user_id", 1),), "user_id"),),
        owner="auth",
    ),
)
