"""Small conversions between Python values and protobuf's well-known types."""

from __future__ import annotations

from google.protobuf import timestamp_pb2


def timestamp(epoch_s: float) -> timestamp_pb2.Timestamp:
    """A ``google.protobuf.Timestamp`` for seconds since the epoch."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(epoch_s * 1e9))
    return stamp
