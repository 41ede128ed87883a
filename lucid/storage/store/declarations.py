"""The schema declarations clusters send (``storage_schema_declarations``), one per cluster."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from lucid.common.v1 import access_pb2
from lucid.lib.clock import Clock
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.storage.v1 import schema_pb2


def cluster_name(value: int) -> str:
    """``CLUSTER_SESSIONS`` (a number) → ``sessions``."""
    return access_pb2.Cluster.Name(value).removeprefix("CLUSTER_").lower()  # type: ignore[arg-type]


def _content(declaration: schema_pb2.SchemaDeclaration) -> bytes:
    copy = schema_pb2.SchemaDeclaration()
    copy.CopyFrom(declaration)
    copy.ClearField("declare_time")
    copy.ClearField("version")
    return copy.SerializeToString(deterministic=True)


class DeclarationStore:
    """Records and reads declarations."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], clock: Clock) -> None:
        self.collection = collection
        self.clock = clock

    async def record(
        self, declaration: schema_pb2.SchemaDeclaration
    ) -> tuple[schema_pb2.SchemaDeclaration, bool]:
        """Stores a declaration (replacing the cluster's previous one); returns it and
        whether its content changed."""
        name = cluster_name(declaration.cluster)
        previous = await self.collection.find_one({"cluster": name})
        changed = previous is None or bytes(previous["content"]) != _content(declaration)
        if not changed and previous is not None:
            return _parse(previous), False
        recorded = schema_pb2.SchemaDeclaration()
        recorded.CopyFrom(declaration)
        recorded.declare_time.FromDatetime(self.clock.now())
        document = {
            "cluster": name,
            "version": recorded.version,
            "content": _content(recorded),
            "declaration": json_format.MessageToDict(recorded, preserving_proto_field_name=True),
        }
        saved = await self.collection.find_one_and_replace(
            {"cluster": name}, document, upsert=True, return_document=ReturnDocument.AFTER
        )
        return _parse(saved), True

    async def all(self) -> list[schema_pb2.SchemaDeclaration]:
        """Every recorded declaration, by cluster number; ``LUCID_ERR_5003`` if MongoDB does
        not answer."""
        try:
            found = [_parse(doc) async for doc in self.collection.find({})]
        except PyMongoError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"MongoDB does not answer: {exc}"
            ) from exc
        return sorted(found, key=lambda d: d.cluster)

    async def owners(self) -> dict[str, access_pb2.Cluster.ValueType]:
        """The declaring cluster of every declared collection ({} while MongoDB is down)."""
        try:
            return {c.name: d.cluster for d in await self.all() for c in d.collections}
        except LucidError:
            return {}


def _parse(document: dict[str, Any] | None) -> schema_pb2.SchemaDeclaration:
    assert document is not None
    return json_format.ParseDict(document["declaration"], schema_pb2.SchemaDeclaration())
