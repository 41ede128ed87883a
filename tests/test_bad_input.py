"""Bad input that used to crash (issue 8 item 4): enum query values that are not numbers
Python can parse, malformed protobuf over gRPC and grpc-web, body errors that listed the
request schema, over-long URLs and headers answered in plain text."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor

from lucid.auth.v1 import auth_pb2
from lucid.runtime.contracts import MethodInfo, catalog
from tests.edge_probe import FrontDoorClient, grpc_web_status, rest_path
from tests.support import Mesh, bearer, details, serve_edge

ISSUE_CHALLENGE = "/lucid.auth.v1.AuthService/IssueChallenge"
NOT_A_MESSAGE = b"\x0a\xff\xff"
"""Field 1, length-delimited, with a length that runs past the end."""
_ips = itertools.count(1)


@pytest.fixture(scope="module")
async def edge_url(mesh: Mesh) -> AsyncIterator[str]:
    await mesh.start("gateway")
    async with serve_edge(mesh.settings) as url:
        yield url


@pytest.fixture
async def client(edge_url: str, mesh: Mesh) -> AsyncIterator[FrontDoorClient]:
    """A client from a loopback address of its own (a fresh per-IP bucket)."""
    n = next(_ips)
    client = FrontDoorClient(edge_url, mesh.settings.certs_dir / "ca.crt", f"127.77.{n}.1")
    try:
        yield client
    finally:
        await client.close()


def _trailer_details(body: bytes, headers: Any = None) -> bytes:
    """The decoded ``grpc-status-details-bin`` of a grpc-web answer: in its trailer frame,
    or in its headers when the answer is trailers-only (Envoy's grpc_web filter)."""
    import base64

    if headers is not None and "grpc-status-details-bin" in headers:
        return base64.b64decode(headers["grpc-status-details-bin"] + "==")
    for line in body.split(b"\r\n"):
        if b"grpc-status-details-bin:" in line:
            return base64.b64decode(line.split(b":", 1)[1].strip() + b"==")
    return b""


def _named_field(error: dict[str, Any]) -> str:
    """The field an error envelope names: its first field violation's, or where Envoy's
    transcoder refused the value before any cluster saw it (the violation, if any, is on
    the whole ``body``), the ``field:`` its message starts with."""
    violations = error.get("details", {}).get("field_violations")
    if violations and violations[0]["field"] != "body":
        return str(violations[0]["field"])
    return str(error["message"]).split(":", 1)[0]


def _enum_query_routes() -> list[tuple[MethodInfo, str, str]]:
    """(rpc, GET path, enum field) for every enum field a GET route takes from the query."""
    found = []
    for info in sorted(catalog().methods.values(), key=lambda m: m.path):
        desc = catalog().pool.FindMessageTypeByName(info.input_type)
        for route in info.routes:
            if route.verb != "GET":
                continue
            for field in desc.fields:
                if field.type == descriptor.FieldDescriptor.TYPE_ENUM and (
                    "{" + field.name not in route.template
                ):
                    found.append((info, rest_path(info, route), field.name))
    return found


async def test_enum_query_values_that_are_not_numbers_are_400_naming_the_field(
    client: FrontDoorClient, edge_url: str
) -> None:
    routes = _enum_query_routes()
    assert len(routes) >= 20  # the issue counted 20 GET routes
    for _, path, field in routes:
        for value in ("--1", "\u00b2", "1_0", "\u0661"):  # ² and Arabic-Indic one pass isdigit()
            async with client.http.get(edge_url + path, params={field: value}) as response:
                body = await response.json()
                assert response.status == 400, (path, field, value, body)
                error = body["error"]
                assert error["code"] == "LUCID_ERR_1001"
                assert _named_field(error) == field


async def test_malformed_protobuf_over_grpc_is_invalid_argument_with_one_warning(
    mesh: Mesh, caplog: pytest.LogCaptureFixture
) -> None:
    async with mesh.channel("auth", "edge") as channel:
        call = channel.unary_unary(ISSUE_CHALLENGE)  # bytes in, bytes out
        with caplog.at_level(logging.WARNING), pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(NOT_A_MESSAGE, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = details(caught.value)
        assert info.reason == "LUCID_ERR_1009"
        assert "IssueChallengeRequest" in info.message
        assert "Error" not in info.message  # no Python exception text
        # a well-formed message is decoded and goes on to its field rules
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(auth_pb2.IssueChallengeRequest().SerializeToString(), timeout=10)
        assert details(caught.value).reason == "LUCID_ERR_1001"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelname, r.getMessage()) for r in warnings] == [
        ("WARNING", "malformed request message")
    ]
    assert not [r for r in caplog.records if r.exc_info]


async def test_malformed_protobuf_over_grpc_web_is_invalid_argument(
    client: FrontDoorClient, edge_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    info = catalog().methods[ISSUE_CHALLENGE]
    with caplog.at_level(logging.WARNING):
        async with client.http.post(
            edge_url + info.path,
            data=b"\x00\x00\x00\x00\x03" + NOT_A_MESSAGE,
            headers={"content-type": "application/grpc-web+proto"},
        ) as response:
            body = await response.read()
            status = grpc_web_status(response.headers, body)
            headers = dict(response.headers)
    assert status == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])
    assert b"LUCID_ERR_1009" in _trailer_details(body, headers)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "malformed request message"
    ]


async def test_body_errors_name_the_field_without_the_schema(
    client: FrontDoorClient, edge_url: str
) -> None:
    # A value of the wrong type is refused by the edge's transcoder, naming the field.
    # An unknown field is ignored, as proto3 JSON parsers may (Envoy's transcoder does),
    # so the rpc's own rules then name what is missing.
    for body, field in (
        ({"tron_address": 5}, "tron_address"),
        ({"no_such_field": 1}, "tron_address"),
    ):
        async with client.http.post(edge_url + "/api/v1/auth/challenge", json=body) as response:
            assert response.status == 400
            text = await response.text()
            error = (await response.json())["error"]
        assert "Available Fields" not in text
        assert "tronAddress" not in text
        assert error["code"] in {"LUCID_ERR_1001", "LUCID_ERR_1009"}
        assert _named_field(error) == field


async def test_over_long_url_and_headers_get_the_json_envelope(
    client: FrontDoorClient, edge_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cases = (
        ("/api/v1/chain/blocks/" + "a" * 9000, {}, 414, "url"),
        ("/api/v1/meta/version", {"x-big": "b" * 9000}, 431, "headers"),
        ("/api/v1/meta/version", {f"x-h{i}": "v" for i in range(200)}, 431, "headers"),
    )
    with caplog.at_level(logging.WARNING):
        for path, headers, status, field in cases:
            async with client.http.get(edge_url + path, headers=headers) as response:
                assert response.status == status
                assert response.content_type == "application/json"
                error = (await response.json())["error"]
            assert error["code"] == "LUCID_ERR_1001"
            assert error["details"]["field_violations"][0]["field"] == field
            assert error["request_id"] == response.headers["x-request-id"]
            assert "b" * 100 not in error["message"]  # the request is not echoed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_edge_refusals_are_the_envelope_naming_what_is_wrong(
    client: FrontDoorClient, edge_url: str
) -> None:
    path = "/api/v1/auth/challenge"
    cases = (
        (
            "OPTIONS",
            {"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"},
            None,
            "origin",
        ),
        ("POST", {"content-type": "application/json"}, b"{not json", "body"),
        ("POST", {"content-type": "application/json"}, b"[1]", "body"),
        ("POST", {"content-type": "text/plain"}, b"x", "content-type"),
    )
    for verb, headers, body, field in cases:
        async with client.http.request(
            verb, edge_url + path, headers=headers, data=body
        ) as response:
            assert response.status >= 400
            assert response.content_type == "application/json"
            error = (await response.json())["error"]
        assert error["details"]["field_violations"][0]["field"] == field, (verb, headers, body)


VERIFY_AUDIT_CHAIN = "/lucid.admin.v1.AuditService/VerifyAuditChain"


async def test_out_of_range_timestamps_over_grpc_are_invalid_argument_naming_the_field(
    mesh: Mesh,
) -> None:
    """Found by the gRPC fuzz (tests/fuzz): a Timestamp no datetime can hold made
    VerifyAuditChain answer INTERNAL; the pipeline refuses it before any handler (1004)."""
    from lucid.admin.v1 import audit_pb2
    from lucid.common.v1 import access_pb2

    started = "admin" not in mesh.servers
    await mesh.start("admin")
    try:
        token = await mesh.token(role=access_pb2.ROLE_ADMIN, kyc=access_pb2.KYC_STATUS_VERIFIED)
        cases = (
            (audit_pb2.VerifyAuditChainRequest(end_time={"seconds": 2**63 - 1}), "end_time"),
            (audit_pb2.VerifyAuditChainRequest(start_time={"nanos": -15891}), "start_time"),
            (
                audit_pb2.VerifyAuditChainRequest(start_time={"seconds": -62_135_596_801}),
                "start_time",
            ),
        )
        async with mesh.channel("admin") as channel:
            call = channel.unary_unary(VERIFY_AUDIT_CHAIN)
            for request, field in cases:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(request.SerializeToString(), metadata=bearer(token), timeout=10)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                info = details(caught.value)
                assert info.reason == "LUCID_ERR_1004"
                assert [v.field for v in info.field_violations] == [field]
            # the edges of the range are times like any other (a day at each end)
            low, high, day = -62_135_596_800, 253_402_300_799, 86_400
            for start, end in ((low, low + day), (high - day, high)):
                edge = audit_pb2.VerifyAuditChainRequest(
                    start_time={"seconds": start}, end_time={"seconds": end}
                )
                reply = audit_pb2.VerifyAuditChainResponse.FromString(
                    await call(edge.SerializeToString(), metadata=bearer(token), timeout=10)
                )
                assert reply.valid
                assert reply.checked_count == 0
    finally:
        if started:  # other modules start their own admin on its port
            await mesh.stop("admin")


def test_out_of_range_times_are_found_nested_repeated_and_in_maps() -> None:
    from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

    from lucid.blockchain.v1 import blockchain_pb2
    from lucid.runtime.wire import out_of_range_times

    assert out_of_range_times(timestamp_pb2.Timestamp(seconds=1, nanos=10**9)) == [
        ("", "nanos between 0 and 999999999")
    ]
    assert out_of_range_times(duration_pb2.Duration(seconds=-1, nanos=5)) != []
    assert out_of_range_times(duration_pb2.Duration(seconds=-1, nanos=-5)) == []
    assert out_of_range_times(duration_pb2.Duration(seconds=315_576_000_001)) != []
    # a message type that cannot hold a time is not looked into; Struct's cycle ends
    assert out_of_range_times(struct_pb2.Struct(fields={"a": struct_pb2.Value()})) == []
    assert out_of_range_times(blockchain_pb2.Block()) == []
    block = blockchain_pb2.Block()
    block.final_time.seconds = 2**40
    block.transactions.add()
    block.transactions.add().confirm_time.nanos = -1
    assert [path for path, _ in out_of_range_times(block)] == [
        "transactions[1].confirm_time",
        "final_time",
    ]
