"""The one page token of every list rpc (lucid.runtime.paging) and the wire time helpers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lucid.auth.v1 import auth_pb2
from lucid.blockchain.v1 import blockchain_pb2
from lucid.common.v1 import access_pb2
from lucid.runtime import paging, wire
from lucid.runtime.errors import ErrorCode, LucidError


def _refused(request: object, scope: object = None) -> LucidError:
    with pytest.raises(LucidError) as caught:
        paging.page(request, scope=scope)  # type: ignore[arg-type]
    assert caught.value.code == ErrorCode.ERROR_CODE_INVALID_PAGE_TOKEN
    return caught.value


def test_the_largest_page_is_read_from_the_proto_rule() -> None:
    assert paging.max_page_size(blockchain_pb2.ListBlocksRequest.DESCRIPTOR) == 100
    assert paging.max_page_size(auth_pb2.ListUsersRequest.DESCRIPTOR) == 1000
    assert paging.max_page_size(auth_pb2.GetUserRequest.DESCRIPTOR) == paging.MAX_PAGE_SIZE
    assert paging.page(blockchain_pb2.ListBlocksRequest(page_size=500)).size == 100
    assert paging.page(blockchain_pb2.ListBlocksRequest(), default=20).size == 20
    assert paging.page(auth_pb2.ListUsersRequest()).size == paging.DEFAULT_PAGE_SIZE
    assert paging.page(auth_pb2.ListUsersRequest(page_size=7)).size == 7


def test_tokens_walk_a_query_to_its_end() -> None:
    request = auth_pb2.ListUsersRequest(role=access_pb2.ROLE_ADMIN, page_size=2)
    items = list(range(5))
    seen: list[int] = []
    while True:
        page = paging.page(request, scope="user-1")
        shown = page.window(items)
        seen += shown
        token = page.next_token(len(shown), len(items))
        if not token:
            break
        # AIP-158: the page size may change between pages, the query may not
        request = auth_pb2.ListUsersRequest(
            role=access_pb2.ROLE_ADMIN, page_size=len(seen) + 1, page_token=token
        )
    assert seen == items
    assert paging.page(request, scope="user-1").next_token(0, 10) == ""


def test_a_token_of_another_query_scope_or_garbage_is_refused() -> None:
    first = paging.page(auth_pb2.ListUsersRequest(role=access_pb2.ROLE_ADMIN), scope="user-1")
    token = first.next_token(50, 120)
    assert token and first.offset == 0
    again = auth_pb2.ListUsersRequest(role=access_pb2.ROLE_ADMIN, page_token=token)
    assert paging.page(again, scope="user-1").offset == 50
    _refused(auth_pb2.ListUsersRequest(role=access_pb2.ROLE_USER, page_token=token), "user-1")
    _refused(again, "user-2")
    _refused(auth_pb2.ListAuditEventsRequest(page_token=token), "user-1")
    error = _refused(auth_pb2.ListUsersRequest(page_token="garbage"))
    assert error.field_violations[0].field == "page_token"
    _refused(auth_pb2.ListUsersRequest(page_token="50"))
    negative = paging.Page(0, 10, first.query).token_at(-1)
    _refused(auth_pb2.ListUsersRequest(role=access_pb2.ROLE_ADMIN, page_token=negative), "user-1")


def test_a_store_cursor_can_be_the_position() -> None:
    page = paging.page(auth_pb2.ListUsersRequest())
    token = page.token_at(987654)
    assert "987654" not in token
    assert paging.page(auth_pb2.ListUsersRequest(page_token=token)).offset == 987654


def test_wire_times_round_trip() -> None:
    naive = datetime(2026, 12, 5, 21, 0, 0, 125000)
    aware = naive.replace(tzinfo=UTC)
    assert wire.timestamp(naive) == wire.timestamp(aware) == wire.timestamp(aware.timestamp())
    assert wire.moment(wire.timestamp(naive)) == aware
    assert wire.epoch_seconds(wire.timestamp(1.5)) == 1.5
    assert wire.optional_timestamp(None) is None
    assert wire.optional_timestamp(2.0) == wire.timestamp(2.0)
    assert wire.seconds(wire.duration(2.25)) == 2.25
    assert wire.duration(0.001).nanos == 1_000_000
    assert wire.utc(naive).tzinfo is UTC and wire.utc(aware) is aware
