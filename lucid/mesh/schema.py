"""The collections of the mesh cluster (spec 10 §3)."""

from __future__ import annotations

from lucid.runtime.keystore import collection_spec
from lucid.runtime.schema import CollectionSpec, IndexSpec

SERVICE_REGISTRY = "service_registry"
POLICIES = "service_mesh_policies"
MESSAGES = "message_queue"
CERTIFICATES = "mesh_certificates"
SETTINGS = "mesh_settings"
SIGNING_KEYS = "mesh_signing_keys"
AUDIT = "mesh_audit_events"
SIDECAR_CONFIGS = "sidecar_configs"

COLLECTIONS = (
    CollectionSpec(
        SERVICE_REGISTRY,
        (
            IndexSpec((("service_id", 1),), "service_id_unique", unique=True),
            IndexSpec((("service_name", 1), ("register_time", 1)), "service_name_time"),
            IndexSpec((("cluster", 1),), "cluster"),
            IndexSpec((("status", 1),), "status"),
        ),
        owner="mesh",
    ),
    CollectionSpec(
        POLICIES,
        (
            IndexSpec((("name", 1),), "name_unique", unique=True),
            IndexSpec((("policy_id", 1),), "policy_id_unique", unique=True),
            IndexSpec((("type", 1), ("priority", -1)), "type_priority"),
        ),
        owner="mesh",
    ),
    CollectionSpec(
        MESSAGES,
        (
            IndexSpec((("message_id", 1),), "message_id_unique", unique=True),
            IndexSpec((("destination", 1), ("status", 1)), "destination_status"),
            IndexSpec((("status", 1), ("expire_time", 1)), "status_expiry"),
        ),
        owner="mesh",
    ),
    CollectionSpec(
        CERTIFICATES,
        (IndexSpec((("serial_number", 1),), "serial_unique", unique=True),),
        owner="mesh",
    ),
    CollectionSpec(
        SIDECAR_CONFIGS,
        (IndexSpec((("service_id", 1),), "service_id_unique", unique=True),),
        owner="mesh",
    ),
    CollectionSpec(SETTINGS, (IndexSpec((("key", 1),), "key_unique", unique=True),), owner="mesh"),
    collection_spec(SIGNING_KEYS, owner="mesh"),
    CollectionSpec(
        AUDIT,
        (
            IndexSpec((("event_time", -1),), "event_time"),
            IndexSpec((("action", 1), ("event_time", -1)), "action_time"),
        ),
        owner="mesh",
    ),
)
