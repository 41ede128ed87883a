"""Page tokens of the chain's lists: an offset bound to the query it belongs to."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from lucid.runtime.errors import ErrorCode, LucidError


@dataclass(frozen=True)
class Page:
    """Where a page starts and how long it is."""

    offset: int
    size: int
    query: str

    def next_token(self, total: int) -> str:
        """The token of the page after this one; empty on the last."""
        following = self.offset + self.size
        if following >= total:
            return ""
        raw = json.dumps({"o": following, "q": self.query}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page(token: str, size: int, *, default: int, maximum: int, query: object) -> Page:
    """The page a request asks for; ``query`` is what makes tokens of other queries invalid."""
    fingerprint = hashlib.sha256(repr(query).encode()).hexdigest()[:16]
    count = min(size or default, maximum)
    if not token:
        return Page(0, count, fingerprint)
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = int(data["o"])
        same = data["q"] == fingerprint
    except (ValueError, KeyError, TypeError):
        same, offset = False, -1
    if not same or offset < 0:
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_PAGE_TOKEN,
            "the page token is malformed or for another query",
        )
    return Page(offset, count, fingerprint)
