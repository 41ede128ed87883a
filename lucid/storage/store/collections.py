"""Collections and indexes of the Lucid database, for the admin rpcs.

Errors by meaning: an unknown collection or index is NOT_FOUND, an existing
name ALREADY_EXISTS, a feature the server lacks (FerretDB: capped options,
validators, 2d/text/hashed indexes) FAILED_PRECONDITION. The audit log's
collection cannot be dropped through the API.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format, struct_pb2
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, OperationFailure

from lucid.common.v1 import access_pb2
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.runtime.schema import NAMESPACE_EXISTS, NOT_IMPLEMENTED
from lucid.storage.schema import AUDIT
from lucid.storage.v1 import database_pb2, schema_pb2
from lucid.storage.validation import (
    ServerTraits,
    compare_indexes,
    create_index,
    list_indexes,
)

INDEX_NOT_FOUND = 27
PROTECTED = frozenset({AUDIT})


def _unsupported(exc: OperationFailure, what: str) -> LucidError:
    return LucidError(
        ErrorCode.ERROR_CODE_NOT_ALLOWED, f"{what} is not supported by this server: {exc}"
    )


class CollectionAdmin:
    """Reads and changes collections and indexes."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db

    async def names(self) -> list[str]:
        """Collection names, sorted, without ``system.*``."""
        return sorted(
            n for n in await self.db.list_collection_names() if not n.startswith("system.")
        )

    async def exists(self, name: str) -> bool:
        """Whether the collection exists."""
        return name in await self.db.list_collection_names(filter={"name": name})

    async def describe(
        self,
        name: str,
        cluster: access_pb2.Cluster.ValueType,
        *,
        with_validator: bool = False,
    ) -> database_pb2.Collection:
        """A collection with its sizes (``collStats``) and options."""
        infos = [i async for i in await self.db.list_collections(filter={"name": name})]
        if not infos:
            raise not_found(f"collection {name}")
        options = dict(infos[0].get("options", {}))
        try:
            stats = await self.db.command("collStats", name)
        except OperationFailure:
            stats = {}
        collection = database_pb2.Collection(
            name=name,
            cluster=cluster,
            document_count=int(stats.get("count", 0)),
            size_bytes=int(stats.get("size", 0)),
            storage_size_bytes=int(stats.get("storageSize", 0)),
            index_count=int(stats.get("nindexes", 0)),
            index_size_bytes=int(stats.get("totalIndexSize", 0)),
            capped=bool(options.get("capped", False)),
            max_size_bytes=int(options.get("size", 0)),
            max_documents=int(options.get("max", 0)),
        )
        if with_validator and options.get("validator"):
            collection.validator.update(_plain(options["validator"]))
        return collection

    async def create(
        self,
        name: str,
        *,
        capped: bool,
        max_size_bytes: int,
        max_documents: int,
        validator: struct_pb2.Struct | None,
    ) -> None:
        """Creates a collection; ALREADY_EXISTS when it exists."""
        options: dict[str, Any] = {}
        if capped:
            options.update(capped=True, size=max_size_bytes)
            if max_documents:
                options["max"] = max_documents
        if validator is not None and validator.fields:
            options["validator"] = json_format.MessageToDict(validator)
        try:
            await self.db.create_collection(name, check_exists=True, **options)
        except CollectionInvalid as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"collection {name} exists"
            ) from exc
        except OperationFailure as exc:
            if exc.code == NAMESPACE_EXISTS:
                raise LucidError(
                    ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"collection {name} exists"
                ) from exc
            if exc.code == NOT_IMPLEMENTED:
                raise _unsupported(exc, "a capped collection or validator") from exc
            raise

    async def drop(self, name: str) -> int:
        """Drops a collection; returns how many documents went with it."""
        if name in PROTECTED:
            raise LucidError(
                ErrorCode.ERROR_CODE_NOT_ALLOWED, f"{name} is the audit log and cannot be dropped"
            )
        if not await self.exists(name):
            raise not_found(f"collection {name}")
        count = await self.db[name].estimated_document_count()
        await self.db.drop_collection(name)
        return int(count)

    async def indexes(self, collection: str) -> list[database_pb2.Index]:
        """The indexes of a collection, by name."""
        if not await self.exists(collection):
            raise not_found(f"collection {collection}")
        return sorted(await list_indexes(self.db, collection), key=lambda i: i.name)

    async def create_index(self, collection: str, spec: schema_pb2.IndexSpec) -> database_pb2.Index:
        """Creates an index; the same one again is a no-op, another under the same
        name ALREADY_EXISTS."""
        if not await self.exists(collection):
            raise not_found(f"collection {collection}")
        traits = await ServerTraits.of(self.db)
        present = await list_indexes(self.db, collection)
        if not spec.name:
            spec.name = "_".join(f"{k.field}_{_suffix(k.kind)}" for k in spec.keys)
        same_keys = [i for i in present if _key_list(i.keys) == _key_list(spec.keys)]
        comparison = compare_indexes(collection, [spec], present, traits)
        if comparison.matching:
            return next(i for i in present if i.name == spec.name)
        if comparison.mismatched:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"index {spec.name} exists with other "
                f"{', '.join(comparison.mismatched[0].differences)}",
            )
        if same_keys:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"index {same_keys[0].name} already has these keys",
            )
        try:
            await create_index(self.db, collection, spec)
        except OperationFailure as exc:
            if exc.code == NOT_IMPLEMENTED:
                raise _unsupported(exc, "this index kind") from exc
            raise
        created = await list_indexes(self.db, collection)
        return next(i for i in created if i.name == spec.name)

    async def drop_index(self, collection: str, index: str) -> None:
        """Drops an index; NOT_FOUND when the collection or index is unknown."""
        names = {i.name for i in await self.indexes(collection)}
        if index not in names:
            raise not_found(f"index {index} of {collection}")
        try:
            await self.db[collection].drop_index(index)
        except OperationFailure as exc:
            if exc.code == INDEX_NOT_FOUND:
                raise not_found(f"index {index} of {collection}") from exc
            raise


def _key_list(keys: Sequence[database_pb2.IndexKey]) -> list[tuple[str, int]]:
    return [(k.field, k.kind) for k in keys]


def _suffix(kind: database_pb2.IndexKind.ValueType) -> str:
    return {
        database_pb2.INDEX_KIND_ASCENDING: "1",
        database_pb2.INDEX_KIND_DESCENDING: "-1",
        database_pb2.INDEX_KIND_GEO_2D: "2d",
        database_pb2.INDEX_KIND_GEO_2DSPHERE: "2dsphere",
        database_pb2.INDEX_KIND_TEXT: "text",
        database_pb2.INDEX_KIND_HASHED: "hashed",
    }[kind]


def _plain(value: Any) -> Any:
    """A BSON value as JSON-compatible data (for a Struct)."""
    return json.loads(json.dumps(value, default=str))
