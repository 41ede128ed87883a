"""Conversions between Python times and protobuf's well-known types, for every cluster.

Stored times are datetimes (MongoDB hands back naive UTC ones) or epoch seconds;
on the wire they are ``google.protobuf.Timestamp`` / ``Duration`` (DECISIONS: UTC).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from google.protobuf import duration_pb2, timestamp_pb2


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
