"""The signed document of a session manifest, shared by sessions (signs) and the chain (checks).

A manifest is signed (Ed25519) over the sorted-key, compact JSON of exactly
these fields, UTF-8 encoded::

    {"generate_time": "2024-05-01T12:00:00.123Z", "manifest_id": "…",
     "manifest_version": "1.0", "merkle_root": "<64 hex>",
     "owner_user_id": "…", "session_id": "…", "total_checksum": "<64 hex>"}

``generate_time`` is RFC 3339 UTC with millisecond precision (what a MongoDB
date keeps), so the document can be rebuilt from stored data and from the
anchor's ``ManifestData``. ``total_checksum`` is the SHA-256 of the chunks' hex
leaf entries concatenated in order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime

MANIFEST_VERSION = "1.0"


def truncate_ms(moment: datetime) -> datetime:
    """``moment`` in UTC, cut to whole milliseconds."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with exactly three fractional digits: ``2024-05-01T12:00:00.123Z``."""
    moment = truncate_ms(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def total_checksum(leaf_entries_hex: Iterable[str]) -> str:
    """SHA-256 over the concatenated hex leaf entries, hex."""
    digest = hashlib.sha256()
    for entry in leaf_entries_hex:
        digest.update(entry.encode("ascii"))
    return digest.hexdigest()


def signed_document(
    *,
    manifest_id: str,
    manifest_version: str,
    session_id: str,
    owner_user_id: str,
    merkle_root: str,
    total_checksum: str,
    generate_time: datetime,
) -> bytes:
    """The exact bytes a manifest signature covers."""
    document = {
        "generate_time": format_time(generate_time),
        "manifest_id": manifest_id,
        "manifest_version": manifest_version,
        "merkle_root": merkle_root,
        "owner_user_id": owner_user_id,
        "session_id": session_id,
        "total_checksum": total_checksum,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
