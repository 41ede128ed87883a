"""Page tokens of the list rpcs (DECISIONS: ``page_size`` default 50, at most 1000).

A token is the offset of the next page and a fingerprint of the query it belongs
to, so a token from another query (other filters, another user) is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def size(requested: int) -> int:
    """The page size to use for a request's ``page_size``."""
    return min(requested, MAX_PAGE_SIZE) if requested > 0 else DEFAULT_PAGE_SIZE


def fingerprint(query: Mapping[str, Any]) -> str:
    """A short, stable digest of a query."""
    canonical = json.dumps(query, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode(offset: int, query: Mapping[str, Any]) -> str:
    """The token of the page starting at ``offset``."""
    raw = json.dumps({"o": offset, "q": fingerprint(query)}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(token: str, query: Mapping[str, Any]) -> int:
    """The offset in a token of this query (0 for no token); raises ``LUCID_ERR_1005``."""
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(data["o"])
        matches = data["q"] == fingerprint(query)
    except (ValueError, KeyError, TypeError, binascii.Error):
        matches, offset = False, -1
    if not matches or offset < 0:
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_PAGE_TOKEN,
            "the page token is malformed or belongs to another query",
            field_violations=[FieldViolation("page_token", "not a token of this query")],
        )
    return offset


def next_token(offset: int, count: int, total: int, query: Mapping[str, Any]) -> str:
    """The token after a page of ``count`` items at ``offset``; empty on the last page."""
    return encode(offset + count, query) if offset + count < total else ""
