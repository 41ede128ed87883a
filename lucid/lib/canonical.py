"""Canonical encodings of the chain, versioned and documented: what is hashed and signed.

Two encodings, both pure functions of their input:

**Block header, version 1** (a fixed binary layout; the block hash is its SHA-256)::

    offset  size  field
    0       8     magic  b"LUCIDBLK"
    8       1     version (1)
    9       8     height             uint64, big-endian
    17      32    previous_hash      raw bytes (32 zero bytes for the genesis block)
    49      32    merkle_root        raw bytes (RFC 9162 root over the transaction hashes)
    81      8     block_time seconds int64, big-endian, since 1970-01-01T00:00:00Z
    89      4     block_time nanos   uint32, big-endian, 0 … 999 999 999
    93      8     slot               uint64, big-endian
    101     4     transaction_count  uint32, big-endian
    105     1     length of proposer_id (1 … 64)
    106     n     proposer_id        ASCII ``[a-z0-9][a-z0-9_-]*``

**Canonical JSON, version 1** (transaction bodies, votes, task proofs): a message is
written as a JSON object of its *set* fields under their proto names, keys sorted by
code point, no insignificant whitespace, UTF-8, strings escaped as Python's ``json``
does with ``ensure_ascii=False`` (the RFC 8785 escapes). Field values: integers (all
widths) as JSON integers; bools; strings; enums by value name; nested messages as
objects; repeated fields as arrays; ``google.protobuf.Timestamp`` as RFC 3339 UTC with
exactly nine fractional digits (``2024-01-01T00:00:00.000000000Z``);
``google.protobuf.Struct``/``Value``/``ListValue`` as the JSON they stand for, where a
number must be an integer of magnitude at most 2^53 (no floats, so no float formatting
to agree on). A field at its default (proto3 implicit presence) is left out; a
message with unknown fields cannot be encoded. The encoded bytes are a one-line
domain tag followed by the JSON, e.g. ``b"lucid_blocks/tx/v1\\n{...}"``; the
transaction hash is the SHA-256 of exactly these bytes.

**Signed messages.** Ed25519 signatures never cover a bare hash that another kind of
signature could also cover: a proposal signs ``b"lucid_blocks/proposal/v1\\0" ‖ hash``,
a prevote ``b"lucid_blocks/prevote/v1\\0" ‖ height ‖ round ‖ hash`` and an approval
``b"lucid_blocks/approval/v1\\0" ‖ height ‖ round ‖ hash`` (uint64 big-endian). A
transaction's signature covers the 32 raw bytes of its hash (itself the hash of a
tagged encoding).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import descriptor, json_format, message, unknown_fields

HEADER_MAGIC = b"LUCIDBLK"
HEADER_VERSION = 1
ZERO_HASH = "0" * 64
MAX_SAFE_INTEGER = 2**53
_PROPOSER_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HEADER_FIXED = struct.Struct(">8sBQ32s32sqIQI")

TX_TAG = b"lucid_blocks/tx/v1\n"
VOTE_TAG = b"lucid_blocks/vote/v1\n"
TASK_PROOF_TAG = b"lucid_blocks/task-proof/v1\n"
GENESIS_TAG = b"lucid_blocks/genesis/v1\n"
_PROPOSAL = b"lucid_blocks/proposal/v1\x00"
_PREVOTE = b"lucid_blocks/prevote/v1\x00"
_APPROVAL = b"lucid_blocks/approval/v1\x00"


class EncodingError(ValueError):
    """A value that has no canonical encoding."""


@dataclass(frozen=True)
class HeaderFields:
    """The fields of a block header, in the order of the encoding."""

    version: int
    height: int
    previous_hash: str
    merkle_root: str
    block_time_seconds: int
    block_time_nanos: int
    slot: int
    transaction_count: int
    proposer_id: str


def _hash_bytes(name: str, value: str) -> bytes:
    if len(value) != 64 or value != value.lower():
        raise EncodingError(f"{name} must be 64 lowercase hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise EncodingError(f"{name} must be 64 lowercase hex digits") from None


def encode_header(header: HeaderFields) -> bytes:
    """The canonical encoding (version 1) of a block header."""
    if header.version != HEADER_VERSION:
        raise EncodingError(f"unknown header version {header.version}")
    if not 0 <= header.height < 2**63 or not 0 <= header.slot < 2**63:
        raise EncodingError("height and slot must be non-negative 63-bit integers")
    if not 0 <= header.block_time_nanos < 1_000_000_000:
        raise EncodingError("block_time nanos must be in 0 … 999999999")
    if not 0 <= header.transaction_count < 2**32:
        raise EncodingError("transaction_count out of range")
    if not _PROPOSER_ID.match(header.proposer_id):
        raise EncodingError("proposer_id must match [a-z0-9][a-z0-9_-]{0,63}")
    proposer = header.proposer_id.encode("ascii")
    return (
        _HEADER_FIXED.pack(
            HEADER_MAGIC,
            header.version,
            header.height,
            _hash_bytes("previous_hash", header.previous_hash),
            _hash_bytes("merkle_root", header.merkle_root),
            header.block_time_seconds,
            header.block_time_nanos,
            header.slot,
            header.transaction_count,
        )
        + bytes([len(proposer)])
        + proposer
    )


def header_hash(header: HeaderFields) -> str:
    """The block hash: SHA-256 of the canonical header encoding, hex."""
    return hashlib.sha256(encode_header(header)).hexdigest()


def proposal_message(block_hash: str) -> bytes:
    """What a proposer signs."""
    return _PROPOSAL + _hash_bytes("block_hash", block_hash)


def prevote_message(height: int, round_: int, block_hash: str) -> bytes:
    """What a validator signs when it prevotes a block in a round."""
    return _PREVOTE + struct.pack(">QQ", height, round_) + _hash_bytes("block_hash", block_hash)


def approval_message(height: int, round_: int, block_hash: str) -> bytes:
    """What a validator signs when it approves (commits to) a block in a round."""
    return _APPROVAL + struct.pack(">QQ", height, round_) + _hash_bytes("block_hash", block_hash)


# -- canonical JSON -------------------------------------------------------------------


def format_timestamp(seconds: int, nanos: int) -> str:
    """RFC 3339 UTC with nine fractional digits."""
    if not 0 <= nanos < 1_000_000_000:
        raise EncodingError("timestamp nanos out of range")
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _number(value: float) -> int:
    if not math.isfinite(value):
        raise EncodingError("numbers must be finite")
    if value != int(value) or abs(value) > MAX_SAFE_INTEGER:
        raise EncodingError("numbers must be integers of magnitude at most 2^53")
    return int(value)


def _json_value(value: Any) -> Any:
    """A ``google.protobuf.Value`` as plain JSON data."""
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        return _number(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: _json_value(v) for k, v in value.struct_value.fields.items()}
    return [_json_value(v) for v in value.list_value.values]


def _scalar(field: descriptor.FieldDescriptor, value: Any) -> Any:
    if field.type == descriptor.FieldDescriptor.TYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value) if field.enum_type else None
        if enum_value is None:
            raise EncodingError(f"{field.name}: unknown enum value {value}")
        return enum_value.name
    if field.type == descriptor.FieldDescriptor.TYPE_BYTES:
        return bytes(value).hex()
    if field.type in (
        descriptor.FieldDescriptor.TYPE_DOUBLE,
        descriptor.FieldDescriptor.TYPE_FLOAT,
    ):
        return _number(value)
    if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
        return to_canonical_data(value)
    return value


def to_canonical_data(msg: message.Message, *, exclude: frozenset[str] = frozenset()) -> Any:
    """A message as the plain JSON data of canonical JSON v1 (see the module doc)."""
    full_name = msg.DESCRIPTOR.full_name
    if full_name == "google.protobuf.Timestamp":
        return format_timestamp(msg.seconds, msg.nanos)  # type: ignore[attr-defined]
    if full_name == "google.protobuf.Struct":
        return {k: _json_value(v) for k, v in msg.fields.items()}  # type: ignore[attr-defined]
    if full_name == "google.protobuf.Value":
        return _json_value(msg)
    if full_name == "google.protobuf.ListValue":
        return [_json_value(v) for v in msg.values]  # type: ignore[attr-defined]
    if full_name.startswith("google.protobuf."):
        raise EncodingError(f"{full_name} has no canonical encoding")
    if has_unknown_fields(msg):
        raise EncodingError(f"{full_name} carries fields this chain does not know")
    data: dict[str, Any] = {}
    for field, value in msg.ListFields():
        if field.name in exclude:
            continue
        if field.is_repeated:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                raise EncodingError(f"{field.name}: maps have no canonical encoding")
            data[field.name] = [_scalar(field, item) for item in value]
        else:
            data[field.name] = _scalar(field, value)
    return data


_CANONICAL_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{9})Z")
"""A timestamp as ``format_timestamp`` writes it."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_JSON_TYPES = frozenset(
    ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue")
)
_INTEGER_TYPES = frozenset(
    (
        descriptor.FieldDescriptor.TYPE_INT32,
        descriptor.FieldDescriptor.TYPE_INT64,
        descriptor.FieldDescriptor.TYPE_UINT32,
        descriptor.FieldDescriptor.TYPE_UINT64,
        descriptor.FieldDescriptor.TYPE_SINT32,
        descriptor.FieldDescriptor.TYPE_SINT64,
        descriptor.FieldDescriptor.TYPE_FIXED32,
        descriptor.FieldDescriptor.TYPE_FIXED64,
        descriptor.FieldDescriptor.TYPE_SFIXED32,
        descriptor.FieldDescriptor.TYPE_SFIXED64,
    )
)


def from_canonical_data(data: Any, msg: message.Message) -> None:
    """Fills ``msg`` from canonical JSON data: the inverse of ``to_canonical_data``, read
    straight off the descriptors (``json_format.ParseDict`` costs several times more).
    Raises ``EncodingError`` for data of the wrong shape; data that only a non-canonical
    encoding gives (a timestamp written otherwise) is read, and re-encoding tells."""
    full_name = msg.DESCRIPTOR.full_name
    if full_name.startswith("google.protobuf."):
        _from_well_known(data, msg, full_name)
        return
    if not isinstance(data, dict):
        raise EncodingError(f"{full_name} is a JSON object")
    fields = msg.DESCRIPTOR.fields_by_name
    for name, value in data.items():
        field = fields.get(name)
        if field is None:
            raise EncodingError(f"{full_name} has no field {name!r}")
        oneof = field.containing_oneof
        if oneof is not None and msg.WhichOneof(oneof.name) is not None:
            raise EncodingError(f"{full_name}: more than one field of {oneof.name}")
        try:
            _set_field(msg, field, value)
        except EncodingError:
            raise
        except (TypeError, ValueError) as exc:
            raise EncodingError(f"{full_name}.{name}: {exc}") from None


def _from_well_known(data: Any, msg: message.Message, full_name: str) -> None:
    if full_name == "google.protobuf.Timestamp":
        if not isinstance(data, str):
            raise EncodingError("a timestamp is an RFC 3339 string")
        try:
            moment = _CANONICAL_TIME.fullmatch(data)
            if moment is None:  # not the canonical form: read it, re-encoding tells
                msg.FromJsonString(data)  # type: ignore[attr-defined]
            else:
                year, month, day, hour, minute, second, nanos = map(int, moment.groups())
                since = datetime(year, month, day, hour, minute, second, tzinfo=UTC) - _EPOCH
                msg.seconds = since.days * 86_400 + since.seconds  # type: ignore[attr-defined]
                msg.nanos = nanos  # type: ignore[attr-defined]
        except ValueError as exc:
            raise EncodingError(f"timestamp: {exc}") from None
    elif full_name in _JSON_TYPES:
        try:
            json_format.ParseDict(data, msg)
        except json_format.ParseError as exc:
            raise EncodingError(str(exc)) from None
    else:
        raise EncodingError(f"{full_name} has no canonical encoding")


def _set_field(msg: message.Message, field: Any, value: Any) -> None:
    name = field.name
    is_message = field.type == descriptor.FieldDescriptor.TYPE_MESSAGE
    if not field.is_repeated:
        if is_message:
            sub = getattr(msg, name)
            sub.SetInParent()
            from_canonical_data(value, sub)
        else:
            setattr(msg, name, _from_scalar(field, value))
        return
    if not isinstance(value, list):
        raise EncodingError(f"{name}: a repeated field is a JSON array")
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        raise EncodingError(f"{name}: maps have no canonical encoding")
    target = getattr(msg, name)
    if is_message:
        for item in value:
            from_canonical_data(item, target.add())
    else:
        target.extend(_from_scalar(field, item) for item in value)


def _from_scalar(field: descriptor.FieldDescriptor, value: Any) -> Any:
    kind = field.type
    if kind == descriptor.FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        number = enum.values_by_name.get(value) if enum and isinstance(value, str) else None
        if number is None:
            raise EncodingError(f"{field.name}: unknown enum value {value!r}")
        return number.number
    if kind == descriptor.FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise EncodingError(f"{field.name}: bytes are a hex string")
        return bytes.fromhex(value)
    if kind == descriptor.FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise EncodingError(f"{field.name}: not a bool")
        return value
    if kind in _INTEGER_TYPES or kind in (
        descriptor.FieldDescriptor.TYPE_DOUBLE,
        descriptor.FieldDescriptor.TYPE_FLOAT,
    ):
        if not isinstance(value, int) or isinstance(value, bool):
            raise EncodingError(f"{field.name}: numbers are JSON integers")
        return value
    if not isinstance(value, str):
        raise EncodingError(f"{field.name}: not a string")
    return value


def canonical_json(data: Any) -> bytes:
    """Plain JSON data as canonical JSON v1 bytes (sorted keys, compact, UTF-8)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def has_unknown_fields(msg: message.Message) -> bool:
    """Whether a message (not its sub-messages) carries fields its schema does not know."""
    return len(unknown_fields.UnknownFieldSet(msg)) > 0


def encode_message(
    tag: bytes, msg: message.Message, *, exclude: frozenset[str] = frozenset()
) -> bytes:
    """``tag`` followed by the canonical JSON of ``msg`` (fields in ``exclude`` left out)."""
    if not tag.endswith(b"\n") or tag.count(b"\n") != 1:
        raise EncodingError("a tag is one line ending in a newline")
    return tag + canonical_json(to_canonical_data(msg, exclude=exclude))


def decode_tagged(encoded: bytes, tag: bytes) -> Any:
    """The JSON data of a tagged canonical encoding (raises if the tag differs)."""
    if not encoded.startswith(tag):
        raise EncodingError(f"expected an encoding tagged {tag!r}")
    return json.loads(encoded[len(tag) :])


def sha256_hex(data: bytes) -> str:
    """SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()
