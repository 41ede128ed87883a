"""Entity ids: UUIDv4 strings for users, sessions, chunks, nodes, payouts (DECISIONS)."""

from __future__ import annotations

import uuid


def new_id() -> str:
    """Returns a fresh UUIDv4 in its canonical lower-case form."""
    return str(uuid.uuid4())


def is_uuid4(value: str) -> bool:
    """Tells whether ``value`` is a canonical lower-case UUIDv4."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return parsed.version == 4 and str(parsed) == value
