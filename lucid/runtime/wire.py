"""Conversions between Python times and protobuf's well-known types, for every cluster.

Stored times are datetimes (MongoDB hands back naive UTC ones) or epoch seconds;
on the wire they are ``google.protobuf.Timestamp`` / ``Duration`` (DECISIONS: UTC).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message


def nanoseconds(seconds: float) -> int:
    """Seconds as whole nanoseconds, without losing the fraction of a large epoch value."""
    whole = math.floor(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1e9)


def utc(moment: datetime) -> datetime:
    """A datetime as an aware UTC one (a naive one is taken to be UTC already)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def timestamp(moment: datetime | float) -> timestamp_pb2.Timestamp:
    """A ``Timestamp`` of a datetime or of seconds since the epoch."""
    stamp = timestamp_pb2.Timestamp()
    if isinstance(moment, datetime):
        stamp.FromDatetime(utc(moment))
    else:
        stamp.FromNanoseconds(nanoseconds(moment))
    return stamp


def optional_timestamp(moment: datetime | float | None) -> timestamp_pb2.Timestamp | None:
    """Like ``timestamp``, but a missing time stays ``None`` (the field stays unset)."""
    return None if moment is None else timestamp(moment)


def epoch_seconds(stamp: timestamp_pb2.Timestamp) -> float:
    """Seconds since the epoch of a ``Timestamp``."""
    return float(stamp.ToNanoseconds()) / 1e9


def moment(stamp: timestamp_pb2.Timestamp) -> datetime:
    """An aware UTC datetime of a ``Timestamp``."""
    return stamp.ToDatetime(tzinfo=UTC)


def duration(seconds: float) -> duration_pb2.Duration:
    """A ``Duration`` of ``seconds`` (nanosecond precision)."""
    value = duration_pb2.Duration()
    value.FromNanoseconds(nanoseconds(seconds))
    return value


def seconds(value: duration_pb2.Duration) -> float:
    """The length of a ``Duration`` in seconds."""
    return float(value.ToNanoseconds()) / 1e9


TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)
"""0001-01-01T00:00:00Z … 9999-12-31T23:59:59Z: the range a ``Timestamp`` may hold."""
DURATION_SECONDS = 315_576_000_000
"""About 10,000 years: the largest ``Duration``, either sign."""
NANOS_MAX = 999_999_999
_TIME_TYPES = ("google.protobuf.Timestamp", "google.protobuf.Duration")


def holds_times(desc: Descriptor, seen: set[str] | None = None) -> bool:
    """Whether messages of ``desc`` can hold a ``Timestamp`` or ``Duration`` anywhere."""
    if desc.full_name in _TIME_TYPES:
        return True
    cached = _HOLDS_TIMES.get(desc.full_name)
    if cached is not None:
        return cached
    top = seen is None
    seen = seen if seen is not None else set()
    if desc.full_name in seen:  # a cycle (Struct, Value): decided where it started
        return False
    seen.add(desc.full_name)
    found = any(
        holds_times(f.message_type, seen) for f in desc.fields if f.message_type is not None
    )
    if top or found:  # a False below the top may come from a cycle cut short
        _HOLDS_TIMES[desc.full_name] = found
    return found


_HOLDS_TIMES: dict[str, bool] = {}


def _time_problem(message: Message) -> str:
    """What is wrong with a ``Timestamp`` or ``Duration`` (empty when it is in range)."""
    seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
    if message.DESCRIPTOR.full_name == _TIME_TYPES[0]:
        low, high = TIMESTAMP_SECONDS
        if not low <= seconds <= high:
            return "a time between years 1 and 9999"
        if not 0 <= nanos <= NANOS_MAX:
            return "nanos between 0 and 999999999"
        return ""
    if not -DURATION_SECONDS <= seconds <= DURATION_SECONDS:
        return "a duration within 10000 years"
    if not -NANOS_MAX <= nanos <= NANOS_MAX or (seconds and nanos and (seconds < 0) != (nanos < 0)):
        return "nanos within a second, of the sign of seconds"
    return ""


def out_of_range_times(message: Message, prefix: str = "") -> list[tuple[str, str]]:
    """Every ``Timestamp``/``Duration`` of a message (nested, repeated or in maps) that is
    out of its type's range, as (field path, what it must be); empty for most messages
    without looking at their values (a message type without such fields)."""
    desc: Descriptor = message.DESCRIPTOR  # type: ignore[assignment]  # upb or pure Python
    if desc.full_name in _TIME_TYPES:
        problem = _time_problem(message)
        return [(prefix, problem)] if problem else []
    if not holds_times(desc):
        return []
    found: list[tuple[str, str]] = []
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                for key, item in value.items():
                    found += out_of_range_times(item, f"{path}[{key!r}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                found += out_of_range_times(item, f"{path}[{index}]")
        else:
            found += out_of_range_times(value, path)
    return found
