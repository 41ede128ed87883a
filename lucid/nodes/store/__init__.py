"""Repositories of the nodes cluster: typed records in and out; MongoDB only here.

Documents hold a record's fields under their own names with the record's id as
``_id``. pymongo errors never leave this package: a duplicate key becomes
``DuplicateError`` (the domain turns it into the right ALREADY_EXISTS), anything else
``LUCID_ERR_5003``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, TypeVar

from pymongo.errors import DuplicateKeyError, PyMongoError

from lucid.runtime.errors import ErrorCode, LucidError

R = TypeVar("R")
Doc = dict[str, Any]


class DuplicateError(Exception):
    """A write hit a unique index."""


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turns pymongo errors into domain ones."""
    try:
        yield
    except DuplicateKeyError as exc:
        raise DuplicateError(str(exc)) from None
    except PyMongoError as exc:
        raise LucidError(
            ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"the node store failed: {exc}"
        ) from None


def to_doc(record: object, id_field: str) -> Doc:
    """A record as a document (its id as ``_id``)."""
    doc = dataclasses.asdict(record)  # type: ignore[call-overload]
    doc["_id"] = doc.pop(id_field)
    return dict(doc)


def from_doc(cls: type[R], doc: Doc, id_field: str) -> R:
    """A record from a document; unknown keys are ignored, missing ones take defaults."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in doc.items() if k in names}
    values[id_field] = doc["_id"]
    return cls(**values)
