"""Offset page tokens for list rpcs (``page_size`` / ``page_token`` / ``next_page_token``)."""

from __future__ import annotations

import base64

from lucid.runtime.errors import ErrorCode, LucidError


def decode(token: str) -> int:
    """The offset a page token stands for (0 for an empty token)."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        kind, _, value = text.partition(":")
        offset = int(value)
    except (ValueError, UnicodeDecodeError):
        offset, kind = -1, ""
    if kind != "offset" or offset < 0:
        raise LucidError(ErrorCode.ERROR_CODE_INVALID_PAGE_TOKEN, "the page token is not valid")
    return offset


def next_token(offset: int, returned: int, total: int) -> str:
    """The token of the page after one that started at ``offset``; empty on the last."""
    following = offset + returned
    if returned == 0 or following >= total:
        return ""
    return base64.urlsafe_b64encode(f"offset:{following}".encode()).decode()


def size(requested: int, default: int, maximum: int) -> int:
    """The page size to use."""
    return min(requested or default, maximum)
