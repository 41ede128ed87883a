"""Pages of every list rpc (AIP-158; DECISIONS: ``page_size`` default 50, at most 1000).

One token format for the whole mesh: an opaque, URL-safe string holding the position
of the next page and a fingerprint of the query it belongs to. The query is the
request itself with ``page_size`` and ``page_token`` cleared (AIP-158: every other
field must stay the same between pages), plus an optional ``scope`` such as the
caller, so a token of another query, another filter or another user is refused with
``LUCID_ERR_1005``. The largest page is the ``lte`` of the request's
``buf.validate`` rule on ``page_size``, so the proto is the one place it is written.

    page = paging.page(request, scope=user_id)
    records, total = await store.list(query, offset=page.offset, limit=page.size)
    return Reply(items=..., next_page_token=page.next_token(len(records), total))
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from buf.validate import validate_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    """Where a requested page starts, how long it may be, and the query it belongs to."""

    offset: int
    size: int
    query: str

    def next_token(self, returned: int, total: int) -> str:
        """The token of the page after this one, which returned ``returned`` of ``total``.

        Empty on the last page (nothing returned, or the end reached).
        """
        following = self.offset + returned
        return self.token_at(following) if returned and following < total else ""

    def window(self, items: Sequence[T]) -> list[T]:
        """This page of a list held in memory."""
        return list(items[self.offset : self.offset + self.size])

    def token_at(self, position: int) -> str:
        """A token of this query for ``position`` (an offset, or a store's own cursor)."""
        raw = json.dumps({"o": position, "q": self.query}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@functools.cache
def max_page_size(descriptor: Descriptor) -> int:
    """The ``lte`` of the ``buf.validate`` rule on a request's ``page_size`` (or 1000)."""
    field = descriptor.fields_by_name.get("page_size")
    if field is None:
        return MAX_PAGE_SIZE
    rules = field.GetOptions().Extensions[validate_pb2.field]
    if rules.HasField("int32") and rules.int32.HasField("lte"):
        return int(rules.int32.lte)
    return MAX_PAGE_SIZE


def fingerprint(request: Message, scope: object = None) -> str:
    """A short, stable digest of a list request without its paging fields."""
    query = type(request)()
    query.CopyFrom(request)
    for name in ("page_size", "page_token"):
        if name in query.DESCRIPTOR.fields_by_name:
            query.ClearField(name)
    digest = hashlib.sha256(query.DESCRIPTOR.full_name.encode())
    digest.update(query.SerializeToString(deterministic=True))
    digest.update(repr(scope).encode())
    return digest.hexdigest()[:16]


def page(request: Message, *, scope: object = None, default: int = DEFAULT_PAGE_SIZE) -> Page:
    """The page a list request asks for; raises ``LUCID_ERR_1005`` for a foreign token.

    ``scope`` is whatever else the results depend on (e.g. the caller's user id).
    """
    maximum = max_page_size(request.DESCRIPTOR)
    requested = int(getattr(request, "page_size", 0))
    size = min(requested, maximum) if requested > 0 else min(default, maximum)
    query = fingerprint(request, scope)
    token = str(getattr(request, "page_token", ""))
    if not token:
        return Page(0, size, query)
    return Page(_position(token, query), size, query)


def _position(token: str, query: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = int(data["o"])
        matches = data["q"] == query
    except (ValueError, KeyError, TypeError, binascii.Error):
        matches, position = False, -1
    if not matches or position < 0:
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_PAGE_TOKEN,
            "the page token is malformed or belongs to another query",
            field_violations=[FieldViolation("page_token", "not a token of this query")],
        )
    return position
