"""The payments cluster's collections and indexes, and its Redis prefix.

Payouts and transfers (wallet transactions, payments, refunds) use their UUID as
``_id``; the caller's idempotency key has a unique index (a transfer's scoped by kind
and owner), so two requests with one key can never both insert. Times are epoch seconds.
"""

from __future__ import annotations

from lucid.runtime.schema import CollectionSpec, IndexSpec

PAYOUTS = "payments_payouts"
WALLETS = "payments_wallets"
AUDIT = "payments_audit_events"
BATCHES = "payments_payout_batches"
RECONCILIATIONS = "payments_reconciliations"
KYC_RECORDS = "payments_kyc_records"
STAKES = "payments_stakes"
SETTINGS = "payments_settings"
TRANSFERS = "payments_transfers"
REDIS_PREFIX = "lucid:payments:"

COLLECTIONS = (
    CollectionSpec(
        PAYOUTS,
        (
            IndexSpec((("idempotency_key", 1),), "idempotency_key_unique", unique=True),
            IndexSpec((("status", 1), ("create_time", -1)), "status_create_time"),
            IndexSpec((("recipient", 1), ("create_time", -1)), "recipient_create_time"),
            IndexSpec((("user_id", 1), ("create_time", -1)), "user_create_time"),
            IndexSpec((("tx.txid", 1),), "txid"),
        ),
        owner="payments",
    ),
    CollectionSpec(
        WALLETS,
        (
            IndexSpec((("address", 1),), "address_unique", unique=True),
            IndexSpec((("user_id", 1), ("create_time", 1)), "user_create_time"),
        ),
        owner="payments",
    ),
    CollectionSpec(
        BATCHES,
        (
            IndexSpec((("idempotency_key", 1),), "idempotency_key_unique", unique=True),
            IndexSpec((("create_time", -1),), "create_time"),
        ),
        owner="payments",
    ),
    CollectionSpec(
        RECONCILIATIONS, (IndexSpec((("complete_time", -1),), "complete_time"),), owner="payments"
    ),
    CollectionSpec(
        KYC_RECORDS,
        (
            IndexSpec((("kyc_hash", 1),), "kyc_hash_unique", unique=True),
            IndexSpec((("node_id", 1), ("create_time", -1)), "node_create_time"),
        ),
        owner="payments",
    ),
    CollectionSpec(
        STAKES,
        (
            IndexSpec((("idempotency_key", 1),), "idempotency_key_unique", unique=True),
            IndexSpec((("wallet_id", 1), ("create_time", -1)), "wallet_create_time"),
        ),
        owner="payments",
    ),
    CollectionSpec(SETTINGS, owner="payments"),
    CollectionSpec(
        TRANSFERS,
        (
            IndexSpec((("scope_key", 1),), "scope_key_unique", unique=True),
            IndexSpec((("slot", 1),), "slot_unique", unique=True),
            IndexSpec((("status", 1), ("create_time", 1)), "status_create_time"),
            IndexSpec((("wallet_id", 1), ("create_time", -1)), "wallet_create_time"),
            IndexSpec((("kind", 1), ("user_id", 1), ("create_time", -1)), "kind_user_create_time"),
            IndexSpec((("payment_id", 1),), "payment_id"),
            IndexSpec((("tx.txid", 1),), "txid"),
        ),
        owner="payments",
    ),
    CollectionSpec(
        AUDIT,
        (IndexSpec((("time", -1),), "time"), IndexSpec((("payout_id", 1),), "payout_id")),
        owner="payments",
    ),
)
