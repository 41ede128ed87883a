"""The collections the sessions cluster owns, and their indexes."""

from __future__ import annotations

from lucid.runtime import keystore
from lucid.runtime.schema import CollectionSpec, IndexSpec

SESSIONS = "sessions"
CHUNKS = "sessions_chunks"
MANIFESTS = "sessions_manifests"
PIPELINES = "sessions_pipelines"
EVENTS = "sessions_events"
KEYS = "sessions_keys"
TRUST_POLICIES = "sessions_trust_policies"

BLOB_PATHS = ("sessions/",)
"""The cluster's directory on the blob volume (``settings.blob_dir``), declared to storage."""

COLLECTIONS = (
    CollectionSpec(
        SESSIONS,
        (
            IndexSpec((("owner_user_id", 1), ("created_at", -1)), "owner_created"),
            IndexSpec((("state", 1), ("updated_at", 1)), "state_updated"),
            IndexSpec((("metadata.project", 1),), "project"),
            IndexSpec((("metadata.environment", 1),), "environment"),
            IndexSpec((("metadata.tags", 1),), "tags"),
        ),
        owner="sessions",
    ),
    CollectionSpec(
        CHUNKS,
        (
            IndexSpec(
                (("session_id", 1), ("sequence_number", 1)), "session_sequence_unique", unique=True
            ),
            IndexSpec((("merkle_hash", 1),), "merkle_hash"),
        ),
        owner="sessions",
    ),
    CollectionSpec(
        MANIFESTS,
        (IndexSpec((("session_id", 1),), "session_unique", unique=True),),
        owner="sessions",
    ),
    CollectionSpec(PIPELINES, (), owner="sessions"),
    CollectionSpec(
        EVENTS,
        (IndexSpec((("session_id", 1), ("event_time", -1)), "session_time"),),
        owner="sessions",
    ),
    keystore.collection_spec(KEYS, owner="sessions"),
    CollectionSpec(
        TRUST_POLICIES,
        (IndexSpec((("owner_user_id", 1), ("created_at", 1)), "owner_created"),),
        owner="sessions",
    ),
)
