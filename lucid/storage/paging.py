"""Offset page tokens for storage's lists (DECISIONS: page_size default 50, max 1000)."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from lucid.runtime.errors import ErrorCode, LucidError

DEFAULT_PAGE_SIZE = 50


def page(token: str, size: int, default: int = DEFAULT_PAGE_SIZE) -> tuple[int, int]:
    """The offset a token names and the page size to use."""
    if not token:
        return 0, size or default
    if not token.isdigit() or len(token) > 9:
        raise LucidError(ErrorCode.ERROR_CODE_INVALID_PAGE_TOKEN, "the page token is malformed")
    return int(token), size or default


def next_token(offset: int, returned: int, total: int) -> str:
    """The token of the following page; empty after the last."""
    following = offset + returned
    return str(following) if returned and following < total else ""


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A datetime as a Timestamp (``None`` stays unset)."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp
