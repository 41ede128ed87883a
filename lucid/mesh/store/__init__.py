"""Storage of the mesh cluster: MongoDB collections and Redis streams, no rules.

Documents keep the proto message as a dict (proto field names) under ``doc`` plus
the few fields that are queried or updated atomically at the top level. Times
that are compared are epoch seconds (floats), the same on MongoDB and FerretDB.
pymongo errors do not leave this package: a taken unique key is ``DuplicateError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf import json_format, message

MessageT = TypeVar("MessageT", bound=message.Message)


def to_doc(msg: message.Message) -> dict[str, Any]:
    """A proto message as a stored dict."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def from_doc(doc: Mapping[str, Any], cls: type[MessageT]) -> MessageT:
    """A stored dict back as a proto message."""
    return json_format.ParseDict(dict(doc), cls(), ignore_unknown_fields=True)


def clean(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A document without its ``_id`` (FerretDB takes no projection in findAndModify)."""
    if doc is not None:
        doc.pop("_id", None)
    return doc


class DuplicateError(Exception):
    """A unique key is already taken."""
