"""Hypothesis strategies built from the contract's descriptors: valid-shaped messages
(every field of the right type, boundary values included), protobuf no parser may
accept, and the odd text values the edge fuzz sends as ids, query values and JSON."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from google.protobuf import descriptor, message

from lucid.runtime.contracts import catalog

FD = descriptor.FieldDescriptor
MAX_DEPTH = 3
"""Nested messages below this depth are left empty (Struct/Value recurse forever)."""

ODD_VALUES = (
    "",
    "-",
    "--1",
    "\u00b2",
    "\u0661",
    "1_0",
    " 1",
    "1e309",
    "nan",
    "-0",
    "18446744073709551616",
    "-9223372036854775809",
    "true",
    "%00",
    "..",
    "../..",
    "\u202e",
    "\ud7ff",
    "' OR 1=1 --",
    '{"$gt": ""}',
    "$where",
    "AAAA====",
    "x" * 300,
)
odd_text = st.one_of(st.sampled_from(ODD_VALUES), st.text(max_size=40))
"""Text that breaks naive parsers: numbers that are not, path tricks, query operators."""

plausible_text = st.one_of(
    odd_text,
    st.uuids().map(str),
    st.binary(min_size=32, max_size=32).map(bytes.hex),
    st.from_regex(r"T[1-9A-HJ-NP-Za-km-z]{33}", fullmatch=True),  # a TRON address shape
    st.sampled_from(("admin", "user", "*", "x" * 10_000)),
)
"""Strings for string fields: odd text, and ids shaped like Lucid's (uuids, hex hashes,
TRON addresses), so that requests get past the first checks now and then."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from(sorted({0, 1, low, high, max(low, -1)})), st.integers(low, high)
    )


_I32 = _ints(-(2**31), 2**31 - 1)
_I64 = _ints(-(2**63), 2**63 - 1)
_U32 = _ints(0, 2**32 - 1)
_U64 = _ints(0, 2**64 - 1)
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FD.TYPE_INT32: _I32,
    FD.TYPE_SINT32: _I32,
    FD.TYPE_SFIXED32: _I32,
    FD.TYPE_INT64: _I64,
    FD.TYPE_SINT64: _I64,
    FD.TYPE_SFIXED64: _I64,
    FD.TYPE_UINT32: _U32,
    FD.TYPE_FIXED32: _U32,
    FD.TYPE_UINT64: _U64,
    FD.TYPE_FIXED64: _U64,
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_FLOAT: st.floats(width=32),
    FD.TYPE_DOUBLE: st.floats(),
    FD.TYPE_STRING: plausible_text,
    FD.TYPE_BYTES: st.one_of(
        st.binary(max_size=80), st.sampled_from((b"", b"\x00" * 32, b"\xff" * 65, b"x" * 70_000))
    ),
}


def _enum(field: descriptor.FieldDescriptor) -> st.SearchStrategy[int]:
    """A declared value, or one the enum does not declare (proto3 enums are open)."""
    declared = [v.number for v in field.enum_type.values]
    return st.one_of(st.sampled_from(declared), st.sampled_from((-1, 999, 2**31 - 1)))


def _value(field: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_ENUM:
        return _enum(field)
    if field.type in (FD.TYPE_MESSAGE, FD.TYPE_GROUP):
        return message_of(field.message_type, depth + 1)
    return _SCALARS[field.type]


def _is_map(field: descriptor.FieldDescriptor) -> bool:
    return field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def message_of(desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[message.Message]:
    """Messages of type ``desc`` with any subset of their fields set to values of the
    right type (empty below ``MAX_DEPTH``)."""
    cls = catalog().message_class(desc.full_name)
    if depth >= MAX_DEPTH:
        return st.just(cls())
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if _is_map(field):
            key, value = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            parts[field.name] = st.dictionaries(
                _value(key, depth), _value(value, depth), max_size=3
            )
        elif field.is_repeated:
            parts[field.name] = st.lists(_value(field, depth), max_size=3)
        else:
            parts[field.name] = _value(field, depth)
    if not parts:
        return st.just(cls())
    chosen = st.fixed_dictionaries({}, optional=parts)
    return chosen.map(lambda values: _build(cls, desc, values))


def _build(
    cls: type[message.Message], desc: descriptor.Descriptor, values: dict[str, Any]
) -> message.Message:
    msg = cls()
    for name, value in values.items():
        field = desc.fields_by_name[name]
        target = getattr(msg, name) if field.is_repeated else None
        if _is_map(field):
            for k, v in value.items():
                if isinstance(v, message.Message):
                    target[k].CopyFrom(v)  # type: ignore[index]
                else:
                    target[k] = v  # type: ignore[index]
        elif target is not None:
            for item in value:
                if isinstance(item, message.Message):
                    target.add().CopyFrom(item)
                else:
                    target.append(item)
        elif isinstance(value, message.Message):
            getattr(msg, name).CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


def request_bytes(input_type: str) -> st.SearchStrategy[bytes]:
    """Serialized valid-shaped requests of an rpc's input type."""
    desc = catalog().pool.FindMessageTypeByName(input_type)
    return message_of(desc).map(lambda m: m.SerializeToString())


def varint(value: int) -> bytes:
    """A protobuf base-128 varint."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


never_valid_protobuf = st.one_of(
    st.binary(max_size=100).map(lambda b: b"\x0e" + b),  # wire type 6
    st.binary(max_size=100).map(lambda b: b"\x0f" + b),  # wire type 7
    st.binary(max_size=100).map(lambda b: b"\x0a" + varint(len(b) + 1) + b),  # runs past the end
)
"""Protobuf that no parser may accept, whatever the random tail (a group or a valid
prefix could be well-formed by chance)."""
