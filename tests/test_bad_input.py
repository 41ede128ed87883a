"""Bad input that used to crash (issue 8 item 4): enum query values that are not numbers
Python can parse, malformed protobuf over gRPC and grpc-web, body errors that listed the
request schema, over-long URLs and headers answered in plain text."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import descriptor

from lucid.auth.v1 import auth_pb2
from lucid.runtime.contracts import MethodInfo, catalog
from tests.edge_probe import FrontDoorClient, grpc_web_status, rest_path
from tests.support import Mesh, details, serve_edge

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


def _trailer_details(body: bytes) -> bytes:
    """The decoded ``grpc-status-details-bin`` of a grpc-web answer's trailer frame."""
    import base64

    for line in body.split(b"\r\n"):
        if b"grpc-status-details-bin:" in line:
            return base64.b64decode(line.split(b":", 1)[1].strip() + b"==")
    return b""


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
                assert error["details"]["field_violations"][0]["field"] == field


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
    assert status == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])
    assert b"LUCID_ERR_1009" in _trailer_details(body)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "malformed request message"
    ]


async def test_body_errors_name_the_field_without_the_schema(
    client: FrontDoorClient, edge_url: str
) -> None:
    for body, field in (
        ({"no_such_field": 1}, "no_such_field"),
        ({"tron_address": 5}, "tron_address"),
    ):
        async with client.http.post(edge_url + "/api/v1/auth/challenge", json=body) as response:
            assert response.status == 400
            text = await response.text()
            error = (await response.json())["error"]
        assert "Available Fields" not in text
        assert "tronAddress" not in text
        assert error["code"] == "LUCID_ERR_1009"
        assert error["details"]["field_violations"] == [
            {"field": field, "description": error["details"]["field_violations"][0]["description"]}
        ]


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
