"""REST transcoding of query and path values: repeated fields, enums by name or number,
64-bit integers beyond 2^53, booleans, well-known types, nested field paths, bodies,
and the HTTP status of every gRPC status in the error envelope."""

from __future__ import annotations

import grpc
import pytest

from lucid.blockchain.v1 import anchoring_pb2, blockchain_pb2
from lucid.edge.transcode import build_request
from lucid.gateway.v1 import gateway_pb2
from lucid.runtime.contracts import catalog
from lucid.runtime.envelope import HTTP_STATUS, envelope
from lucid.runtime.errors import ErrorDetails, LucidError


def _cls(name: str):  # type: ignore[no-untyped-def]
    return catalog().message_class(name)


def test_repeated_enums_by_name_and_number() -> None:
    message = build_request(
        _cls("lucid.blockchain.v1.ListAnchoringsRequest"),
        body_rule="",
        body=None,
        path_values={},
        query={"statuses": ["ANCHORING_STATUS_PENDING", "2"]},
    )
    assert list(message.statuses) == [anchoring_pb2.ANCHORING_STATUS_PENDING, 2]  # type: ignore[attr-defined]


def test_int64_beyond_2_53_and_enums_and_bools() -> None:
    message = build_request(
        _cls("lucid.blockchain.v1.ListBlocksRequest"),
        body_rule="",
        body=None,
        path_values={},
        query={"height_from": ["9007199254740993"], "order": ["1"]},
    )
    assert message.height_from == 9007199254740993  # type: ignore[attr-defined]
    block = build_request(
        _cls("lucid.blockchain.v1.GetBlockRequest"),
        body_rule="",
        body=None,
        path_values={"height": "42"},
        query={"include_transactions": ["true"]},
    )
    assert block.height == 42 and block.include_transactions  # type: ignore[attr-defined]
    assert blockchain_pb2.GetBlockRequest.FromString(block.SerializeToString()).height == 42


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height_from", "1.5"),
        ("height_from", "99999999999999999999"),
        ("order", "NOT_AN_ORDER"),
        ("page_size", "abc"),
    ],
)
def test_bad_query_values_name_the_field(field: str, value: str) -> None:
    with pytest.raises(LucidError) as caught:
        build_request(
            _cls("lucid.blockchain.v1.ListBlocksRequest"),
            body_rule="",
            body=None,
            path_values={},
            query={field: [value]},
        )
    assert caught.value.reason == "LUCID_ERR_1001"
    assert caught.value.field_violations[0].field == field


def test_singular_field_given_twice_is_refused() -> None:
    with pytest.raises(LucidError):
        build_request(
            _cls("lucid.blockchain.v1.ListBlocksRequest"),
            body_rule="",
            body=None,
            path_values={},
            query={"height_from": ["1", "2"]},
        )


def test_timestamps_in_the_query() -> None:
    message = build_request(
        _cls("lucid.admin.v1.QueryAuditLogsRequest"),
        body_rule="",
        body=None,
        path_values={},
        query={"start_time": ["2026-01-02T03:04:05Z"]},
    )
    assert message.start_time.seconds == 1767323045  # type: ignore[attr-defined]


def test_nested_field_paths_and_field_bodies() -> None:
    nested = build_request(
        gateway_pb2.RateLimitStatus,
        body_rule="",
        body=None,
        path_values={"policy.limit": "7"},
        query={"policy.tier": ["RATE_LIMIT_TIER_ADMIN"], "used": ["2"]},
    )
    assert nested.policy.limit == 7 and nested.used == 2  # type: ignore[attr-defined]
    assert nested.policy.tier == gateway_pb2.RATE_LIMIT_TIER_ADMIN  # type: ignore[attr-defined]
    field_body = build_request(
        gateway_pb2.RateLimitStatus,
        body_rule="policy",
        body={"limit": "100", "burst": 200},
        path_values={},
        query={"used": ["3"], "policy.limit": ["999"]},
    )
    assert field_body.policy.limit == 100 and field_body.used == 3  # type: ignore[attr-defined]


def test_every_status_has_an_http_status_and_a_lucid_code() -> None:
    expected = {
        "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
        "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403,
        "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
        "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
        "UNAVAILABLE": 503, "DATA_LOSS": 500, "OK": 200,
    }  # fmt: skip
    assert {code.name: HTTP_STATUS[code] for code in grpc.StatusCode} == expected
    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK:
            continue
        status, body = envelope(ErrorDetails(status=code, message="m"), request_id="r", service="s")
        assert status == expected[code.name]
        assert body["error"]["code"].startswith("LUCID_ERR_")
