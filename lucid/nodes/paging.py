"""Offset pages of the nodes list rpcs (default 20, at most the proto's 100).

A stand-in until ``lucid.runtime.paging`` (branch ``layout``) lands on main;
then the list rpcs switch to it and this module goes.
"""

from __future__ import annotations

import base64

from lucid.runtime.errors import ErrorCode, LucidError

DEFAULT_SIZE = 20
MAX_SIZE = 100


def page(page_size: int, page_token: str) -> tuple[int, int]:
    """(offset, size) of a requested page."""
    offset = 0
    if page_token:
        try:
            kind, _, value = base64.urlsafe_b64decode(page_token.encode()).decode().partition(":")
            offset = int(value)
        except (ValueError, UnicodeDecodeError):
            kind = ""
        if kind != "nodes-offset" or offset < 0:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_PAGE_TOKEN, "the page token is not valid")
    return offset, min(page_size or DEFAULT_SIZE, MAX_SIZE)


def next_token(offset: int, returned: int, total: int) -> str:
    """The token of the following page; empty on the last."""
    following = offset + returned
    if not returned or following >= total:
        return ""
    return base64.urlsafe_b64encode(f"nodes-offset:{following}".encode()).decode()
