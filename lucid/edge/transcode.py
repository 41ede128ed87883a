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
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor, json_format, message

from lucid.runtime.errors import ErrorCode, ErrorDetails, FieldViolation, LucidError

MAX_JSON_DEPTH = 10


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
        raise LucidError(ErrorCode.ERROR_CODE_MALFORMED_BODY, f"body is not JSON: {exc}") from None
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
        try:
            number = int(text, 10)
        except ValueError:
            raise _bad_value(field, path, text, "an integer") from None
        if not low <= number <= high:
            raise _bad_value(field, path, text, f"an integer in [{low}, {high}]")
        return str(number) if kind in _INT64 or kind in _UINT64 else number
    if kind == descriptor.FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None  # an enum field always has its type
        if text.lstrip("-").isdigit() and int(text) in enum.values_by_number:
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
                raise LucidError(ErrorCode.ERROR_CODE_MALFORMED_BODY, "body must be a JSON object")
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
    except json_format.ParseError as exc:
        raise LucidError(
            ErrorCode.ERROR_CODE_MALFORMED_BODY, f"body does not fit {desc.name}: {exc}"
        ) from None
    return request


def to_json(msg: message.Message) -> dict[str, Any]:
    """A response as JSON with proto field names and every scalar present."""
    result: dict[str, Any] = json_format.MessageToDict(
        msg,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return result


def local_error(error: LucidError) -> ErrorDetails:
    """An error the edge raises itself, as if a server had sent it."""
    domain = error.domain or "lucid.edge"
    status = error.to_status(domain=domain, request_id="", service=domain.removeprefix("lucid."))
    return ErrorDetails.from_status(status)
