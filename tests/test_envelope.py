"""The JSON error envelope of HTTP callers (``lucid.runtime.envelope``): every gRPC
status has its HTTP status and a Lucid code, and the trailers a cluster sends the edge."""

from __future__ import annotations

import json

import grpc

from lucid.runtime.envelope import HTTP_STATUS, envelope, envelope_trailers
from lucid.runtime.errors import ErrorDetails


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


def test_the_trailers_carry_the_envelope_and_its_status() -> None:
    details = ErrorDetails(status=grpc.StatusCode.NOT_FOUND, message='no such "thing" ü')
    (name, text), (status_name, status) = envelope_trailers(
        details, request_id="r-1", service="auth"
    )
    assert (name, status_name, status) == ("lucid-error-envelope", "lucid-http-status", "404")
    assert text.isascii()
    error = json.loads(text)["error"]
    assert error["code"] == "LUCID_ERR_4001" and error["message"] == 'no such "thing" ü'
    assert (error["request_id"], error["service"], error["version"]) == ("r-1", "auth", "v1")
