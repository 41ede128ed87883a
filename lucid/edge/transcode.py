"""JSON ↔ protobuf for the edge, and the JSON error envelope.

A request message is assembled as ``google.api.http`` prescribes: the body (all of
it for ``body: "*"``, or one field), then path variables, then — for anything not
bound by the body — query parameters, each by its (possibly nested) field path.
Responses keep proto field names (``preserve_proto_field_names``). Errors become
``{"error": {"code": "LUCID_ERR_…", …}}`` with the HTTP status of their gRPC
status (spec 01 §9).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import descriptor, json_format, message

from lucid.runtime.errors import ErrorCode, ErrorDetails, FieldViolation, LucidError, reason_of

MAX_JSON_DEPTH = 10

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


def json_depth(value: Any) -> int:
    """The nesting depth of a parsed JSON value (a scalar is 0)."""
    depth = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            depth = max(depth, level + 1)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            depth = max(depth, level + 1)
            stack.extend((v, level + 1) for v in item)
    return depth


def parse_json_body(raw: bytes) -> Any:
    """Parses a JSON body, refusing malformed or too deeply nested ones."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LucidError(
            ErrorCode.ERROR_CODE_MALFORMED_BODY,
            f"body is not JSON: {exc}",
            field_violations=[FieldViolation("body", "not JSON")],
        ) from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise LucidError(
            ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
            field_violations=[FieldViolation("body", f"depth over {MAX_JSON_DEPTH}")],
        )
    return value


_INT32 = (
    descriptor.FieldDescriptor.TYPE_INT32,
    descriptor.FieldDescriptor.TYPE_SINT32,
    descriptor.FieldDescriptor.TYPE_SFIXED32,
)
_UINT32 = (descriptor.FieldDescriptor.TYPE_UINT32, descriptor.FieldDescriptor.TYPE_FIXED32)
_INT64 = (
    descriptor.FieldDescriptor.TYPE_INT64,
    descriptor.FieldDescriptor.TYPE_SINT64,
    descriptor.FieldDescriptor.TYPE_SFIXED64,
)
_UINT64 = (descriptor.FieldDescriptor.TYPE_UINT64, descriptor.FieldDescriptor.TYPE_FIXED64)
_RANGES = {
    **dict.fromkeys(_INT32, (-(2**31), 2**31 - 1)),
    **dict.fromkeys(_UINT32, (0, 2**32 - 1)),
    **dict.fromkeys(_INT64, (-(2**63), 2**63 - 1)),
    **dict.fromkeys(_UINT64, (0, 2**64 - 1)),
}
SCALAR_MESSAGES = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}
"""Well-known types whose JSON form is one string or number: allowed as query values."""


_INTEGER = re.compile(r"-?[0-9]{1,20}")
"""A decimal integer in ASCII digits, as the JSON mapping of protobuf writes one."""


def _bad_value(field: descriptor.FieldDescriptor, path: str, text: str, what: str) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
        f"invalid {path}: {text!r} is not {what}",
        field_violations=[FieldViolation(path, f"not {what}")],
    )


def _scalar(field: descriptor.FieldDescriptor, path: str, text: str) -> Any:  # noqa: PLR0911
    """A query or path value as the JSON value ``ParseDict`` expects for ``field``."""
    kind = field.type
    if kind == descriptor.FieldDescriptor.TYPE_BOOL:
        lowered = text.lower()
        if lowered not in {"true", "false", "1", "0"}:
            raise _bad_value(field, path, text, "a boolean")
        return lowered in {"true", "1"}
    if kind in (descriptor.FieldDescriptor.TYPE_DOUBLE, descriptor.FieldDescriptor.TYPE_FLOAT):
        try:
            return float(text)
        except ValueError:
            raise _bad_value(field, path, text, "a number") from None
    if kind in _RANGES:
        low, high = _RANGES[kind]
        if not _INTEGER.fullmatch(text):  # int() would take "1_0", " 1" or other digits
            raise _bad_value(field, path, text, "an integer")
        number = int(text, 10)
        if not low <= number <= high:
            raise _bad_value(field, path, text, f"an integer in [{low}, {high}]")
        return str(number) if kind in _INT64 or kind in _UINT64 else number
    if kind == descriptor.FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None  # an enum field always has its type
        if _INTEGER.fullmatch(text) and int(text) in enum.values_by_number:
            return int(text)
        if text in enum.values_by_name:
            return text
        raise _bad_value(field, path, text, f"a value of {enum.name}")
    if kind == descriptor.FieldDescriptor.TYPE_BYTES:
        try:
            padded = text + "=" * (-len(text) % 4)
            decoded = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        except (binascii.Error, ValueError):
            raise _bad_value(field, path, text, "base64") from None
        return base64.b64encode(decoded).decode()
    return text  # strings, and well-known types in their JSON string form


def _assign(target: dict[str, Any], msg_desc: Any, path: str, values: Sequence[str]) -> None:
    parts = path.split(".")
    desc = msg_desc
    node = target
    for i, part in enumerate(parts):
        field = desc.fields_by_name.get(part)
        if field is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"unknown parameter {path!r}",
                field_violations=[FieldViolation(path, "no such field")],
            )
        if i == len(parts) - 1:
            if (
                field.type == descriptor.FieldDescriptor.TYPE_MESSAGE
                and field.message_type.full_name not in SCALAR_MESSAGES
            ):
                raise LucidError(
                    ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                    f"parameter {path!r} names a message, not a value",
                    field_violations=[FieldViolation(path, "not a scalar field")],
                )
            if field.is_repeated is False and len(values) > 1:
                raise LucidError(
                    ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                    f"parameter {path!r} given {len(values)} times; it takes one value",
                    field_violations=[FieldViolation(path, "repeated for a singular field")],
                )
            converted = [_scalar(field, path, v) for v in values]
            node[part] = converted if field.is_repeated else converted[-1]
            return
        if field.type != descriptor.FieldDescriptor.TYPE_MESSAGE or field.is_repeated:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                f"parameter {path!r} does not name a field",
                field_violations=[FieldViolation(path, "no such field")],
            )
        node = node.setdefault(part, {})
        desc = field.message_type


def build_request(
    cls: type[message.Message],
    *,
    body_rule: str,
    body: Any,
    path_values: Mapping[str, str],
    query: Mapping[str, Sequence[str]],
) -> message.Message:
    """The request message of one REST call."""
    desc = cls.DESCRIPTOR
    data: dict[str, Any] = {}
    if body_rule == "*":
        if body is not None:
            if not isinstance(body, dict):
                raise LucidError(
                    ErrorCode.ERROR_CODE_MALFORMED_BODY,
                    "body must be a JSON object",
                    field_violations=[FieldViolation("body", "not a JSON object")],
                )
            data = body
    elif body_rule and body is not None:
        data[body_rule] = body
    for path, value in path_values.items():
        _assign(data, desc, path, [value])
    if body_rule != "*":
        for key, values in query.items():
            if key in path_values or (body_rule and key.split(".")[0] == body_rule):
                continue
            _assign(data, desc, key, values)
    request = cls()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise parse_error(desc.name, str(exc)) from None
    return request


_NO_FIELD = re.compile(r'has no field named "([^"]*)" at "([^"]*)"')
_FAILED_FIELD = re.compile(r"^Failed to parse (\S+) field: ")
MAX_DETAIL = 120


def parse_error(type_name: str, text: str) -> LucidError:
    """A JSON body that does not fit the request message, naming the field that is wrong
    (and never listing the message's schema, as protobuf's own error text does)."""
    unknown = _NO_FIELD.search(text)
    if unknown:
        name, at = unknown.groups()
        field = ".".join([*at.split(".")[1:], name])
        description = "no such field"
    else:
        parts = []
        while found := _FAILED_FIELD.match(text):
            parts.append(found.group(1))
            text = text[found.end() :]
        field = ".".join(parts) or "body"
        description = text.splitlines()[0] if text else "not valid"
    description = description.split("Available Fields")[0].strip()[:MAX_DETAIL]
    return LucidError(
        ErrorCode.ERROR_CODE_MALFORMED_BODY,
        f"body does not fit {type_name}: {field}: {description}",
        field_violations=[FieldViolation(field, description)],
    )


def to_json(msg: message.Message) -> dict[str, Any]:
    """A response as JSON with proto field names and every scalar present."""
    result: dict[str, Any] = json_format.MessageToDict(
        msg,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return result


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


def local_error(error: LucidError) -> ErrorDetails:
    """An error the edge raises itself, as if a server had sent it."""
    domain = error.domain or "lucid.edge"
    status = error.to_status(domain=domain, request_id="", service=domain.removeprefix("lucid."))
    return ErrorDetails.from_status(status)
