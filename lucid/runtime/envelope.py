"""The JSON error envelope of HTTP callers, and the HTTP status of each gRPC status.

``{"error": {"code": "LUCID_ERR_…", "message", "details", "request_id", "timestamp",
"service", "version"}}`` with the HTTP status of the gRPC status (spec 01 §9). A
cluster renders it for calls relayed by the edge and sends it in the trailers
``lucid-error-envelope`` / ``lucid-http-status``; Envoy's edge puts it in place of the
transcoded body (``lucid.codegen.edgeconfig``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.message import Message

from lucid.runtime.errors import ErrorCode, ErrorDetails, reason_of

ENVELOPE_TRAILER = "lucid-error-envelope"
STATUS_TRAILER = "lucid-http-status"
STREAM_ERRORS_HEADER = "lucid-stream-errors"
"""Set by the edge (only) on a REST call of a server stream: the client reads NDJSON and
never sees trailers, so an error after the first message also travels as one last
message, ``stream_error_marker``, which the edge turns into the line ``{"error": …}``."""
STREAM_ERROR_FIELD = 536_870_911
"""The field number (the largest protobuf allows, used by no Lucid message) that carries
the envelope in a stream's last message, as an unknown field of any response type."""
STREAM_ERROR_TAG = b"\xfa\xff\xff\xff\x0f"
"""The tag of ``STREAM_ERROR_FIELD`` with wire type 2 (length-delimited), as a varint:
the first bytes of a marker message, which the edge looks for."""

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
"""gRPC status → HTTP status, as Envoy's transcoder and Google's APIs map them."""

FALLBACK_REASON = {
    grpc.StatusCode.CANCELLED: ErrorCode.ERROR_CODE_UNKNOWN,
    grpc.StatusCode.UNKNOWN: ErrorCode.ERROR_CODE_UNKNOWN,
    grpc.StatusCode.INVALID_ARGUMENT: ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCode.ERROR_CODE_DEADLINE_EXCEEDED,
    grpc.StatusCode.NOT_FOUND: ErrorCode.ERROR_CODE_NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: ErrorCode.ERROR_CODE_ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED: ErrorCode.ERROR_CODE_PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED: ErrorCode.ERROR_CODE_UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorCode.ERROR_CODE_RATE_LIMITED,
    grpc.StatusCode.FAILED_PRECONDITION: ErrorCode.ERROR_CODE_INVALID_STATE,
    grpc.StatusCode.ABORTED: ErrorCode.ERROR_CODE_TRANSACTION_FAILED,
    grpc.StatusCode.OUT_OF_RANGE: ErrorCode.ERROR_CODE_OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED: ErrorCode.ERROR_CODE_NOT_IMPLEMENTED,
    grpc.StatusCode.INTERNAL: ErrorCode.ERROR_CODE_INTERNAL,
    grpc.StatusCode.UNAVAILABLE: ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS: ErrorCode.ERROR_CODE_DATA_LOSS,
}
"""The Lucid code of a bare status (one sent without ``ErrorInfo``, e.g. by a proxy)."""

SPECIAL_HTTP = {
    reason_of(ErrorCode.ERROR_CODE_PAYLOAD_TOO_LARGE): 413,
    reason_of(ErrorCode.ERROR_CODE_UNSUPPORTED_MEDIA_TYPE): 415,
}


def envelope(details: ErrorDetails, *, request_id: str, service: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON error envelope of a failed call."""
    reason = details.reason or reason_of(
        FALLBACK_REASON.get(details.status, ErrorCode.ERROR_CODE_UNKNOWN)
    )
    status = SPECIAL_HTTP.get(reason, HTTP_STATUS.get(details.status, 500))
    extra: dict[str, Any] = {}
    if details.domain:
        extra["domain"] = details.domain
    if details.field_violations:
        extra["field_violations"] = [
            {"field": v.field, "description": v.description} for v in details.field_violations
        ]
    if details.retry_after_s is not None:
        extra["retry_after_seconds"] = details.retry_after_s
    metadata = {k: v for k, v in details.metadata.items() if k not in {"request_id", "service"}}
    if metadata:
        extra["metadata"] = metadata
    return status, {
        "error": {
            "code": reason,
            "message": details.message,
            "details": extra,
            "request_id": details.request_id or request_id,
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "service": details.metadata.get("service", service),
            "version": "v1",
        }
    }


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def stream_error_marker(
    kind: type[Message], details: ErrorDetails, *, request_id: str, service: str
) -> Message:
    """A message of the stream's response type whose only content is the envelope (in
    the unknown field ``STREAM_ERROR_FIELD``): the edge's cue for the NDJSON error line."""
    _, body = envelope(details, request_id=request_id, service=service)
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()
    return kind.FromString(STREAM_ERROR_TAG + _varint(len(text)) + text)


def envelope_trailers(
    details: ErrorDetails, *, request_id: str, service: str
) -> tuple[tuple[str, str], tuple[str, str]]:
    """The envelope and its HTTP status as trailing metadata (ASCII JSON)."""
    status, body = envelope(details, request_id=request_id, service=service)
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=True)
    return (ENVELOPE_TRAILER, text), (STATUS_TRAILER, str(status))
