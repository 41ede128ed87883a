"""The collections the nodes cluster owns, their indexes, and its Redis prefix."""

from __future__ import annotations

from lucid.runtime.schema import CollectionSpec, IndexSpec

NODES = "nodes"
POOLS = "node_pools"
REGISTRATIONS = "node_registrations"
STAKES = "node_stakes"
METRICS = "node_resource_metrics"
ALLOCATIONS = "node_allocations"
POOT = "poot_validations"
POOT_NONCES = "poot_nonces"
TASK_PROOFS = "node_task_proofs"
AUDIT = "nodes_audit_events"
PAYOUTS = "node_payouts"
PAYOUT_BATCHES = "node_payout_batches"
PAYOUT_SCHEDULE = "node_payout_schedule"

REDIS_PREFIX = "lucid:nodes:"
METRICS_TTL_S = 90 * 86400
"""Resource samples are kept 90 days (spec 05 §5)."""

COLLECTIONS = (
    CollectionSpec(
        NODES,
        (
            IndexSpec((("node_address", 1),), "node_address_unique", unique=True),
            IndexSpec((("pool_id", 1), ("name", 1)), "pool_name"),
            IndexSpec((("owner_user_id", 1), ("created_at", 1)), "owner_created"),
            IndexSpec((("state", 1),), "state"),
            IndexSpec((("node_type", 1),), "node_type"),
            IndexSpec((("last_heartbeat", 1),), "last_heartbeat"),
            IndexSpec((("poot_score", -1),), "poot_score_desc"),
        ),
        owner="nodes",
    ),
    CollectionSpec(POOLS, (IndexSpec((("name", 1),), "name_unique", unique=True),), owner="nodes"),
    CollectionSpec(STAKES, (IndexSpec((("node_id", 1),), "node"),), owner="nodes"),
    CollectionSpec(
        REGISTRATIONS,
        (
            IndexSpec((("state", 1), ("expires_at", 1)), "state_expiry"),
            IndexSpec((("node_address", 1),), "node_address"),
        ),
        owner="nodes",
    ),
    CollectionSpec(
        METRICS,
        (
            IndexSpec((("node_id", 1), ("sample_time", -1)), "node_time"),
            IndexSpec((("sample_time", 1),), "ttl_90d", ttl_seconds=METRICS_TTL_S),
        ),
        owner="nodes",
    ),
    CollectionSpec(ALLOCATIONS, (IndexSpec((("node_id", 1),), "node"),), owner="nodes"),
    CollectionSpec(
        POOT,
        (
            IndexSpec((("node_id", 1), ("output_time", -1)), "node_time"),
            IndexSpec((("node_id", 1), ("created_at", -1)), "node_created"),
            IndexSpec((("output_hash", 1),), "output_hash"),
            IndexSpec((("batch_id", 1),), "batch"),
        ),
        owner="nodes",
    ),
    CollectionSpec(
        POOT_NONCES,
        (IndexSpec((("used_at", 1),), "ttl_24h", ttl_seconds=24 * 3600),),
        owner="nodes",
    ),
    CollectionSpec(
        TASK_PROOFS,
        (
            IndexSpec(
                (("node_id", 1), ("slot", 1), ("task_type", 1)),
                "node_slot_task_unique",
                unique=True,
            ),
            IndexSpec((("proof_time", 1),), "proof_time"),
            IndexSpec((("pool_id", 1), ("proof_time", 1)), "pool_time"),
        ),
        owner="nodes",
    ),
    CollectionSpec(
        PAYOUTS,
        (
            IndexSpec((("state", 1), ("created_at", 1)), "state_created"),
            IndexSpec((("node_id", 1), ("created_at", -1)), "node_created"),
            IndexSpec((("batch_id", 1),), "batch"),
        ),
        owner="nodes",
    ),
    CollectionSpec(PAYOUT_BATCHES, (), owner="nodes"),
    CollectionSpec(PAYOUT_SCHEDULE, (), owner="nodes"),
    CollectionSpec(
        AUDIT, (IndexSpec((("resource", 1), ("event_time", -1)), "resource_time"),), owner="nodes"
    ),
)
