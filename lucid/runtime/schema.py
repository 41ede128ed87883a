"""Collections and indexes, declared by each cluster and created idempotently.

A cluster lists its ``CollectionSpec``s in ``lucid/<cluster>/schema.py``; the server
creates them at start (and again after MongoDB comes back). The server then sends
the declaration (collections, its Redis prefix ``lucid:<cluster>:``, its blob
paths) to the storage cluster's ``SchemaService.DeclareSchema`` (``SchemaDeclarer``,
best effort, retried), so that storage can compare every cluster's declaration
with what the stores hold without importing any cluster's code.

FerretDB (the one-machine MongoDB) lacks two index options: TTL
(``expireAfterSeconds``) and ``sparse`` (accepted, but neither stored nor
reported). TTL indexes are therefore created as plain indexes there and a
``TtlSweeper`` deletes expired documents; ``sparse`` is left out of comparisons.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from lucid.common.v1 import access_pb2
from lucid.storage.v1 import database_pb2, schema_pb2  # the storage contract, not the cluster

log = logging.getLogger("lucid.schema")

NOT_IMPLEMENTED = 238  # the server error code FerretDB uses for missing features
NAMESPACE_EXISTS = 48


@dataclass(frozen=True)
class IndexSpec:
    """One index: keys in order, and its options."""

    keys: tuple[tuple[str, int], ...]
    name: str
    unique: bool = False
    sparse: bool = False
    ttl_seconds: int | None = None
    """Expire documents this long after the date in the (single) key field."""


@dataclass(frozen=True)
class CollectionSpec:
    """A collection a cluster owns, with its indexes."""

    name: str
    indexes: tuple[IndexSpec, ...] = ()
    owner: str = ""


@dataclass
class SchemaResult:
    """What ``ensure_schema`` did."""

    created_collections: list[str] = field(default_factory=list)
    created_indexes: list[str] = field(default_factory=list)
    emulated_ttl: list[tuple[str, IndexSpec]] = field(default_factory=list)


async def is_ferretdb(db: AsyncDatabase[Any]) -> bool:
    """Whether the server is FerretDB (it says so in ``buildInfo``)."""
    info = await db.client.admin.command("buildInfo")
    return "ferretdbVersion" in info or "ferretdb" in str(info.get("ferretdbFeatures", ""))


async def create_collection(db: AsyncDatabase[Any], name: str) -> bool:
    """Creates a collection unless it exists (a first write may create it meanwhile);
    returns whether this call created it."""
    try:
        await db.create_collection(name, check_exists=False)
    except OperationFailure as exc:
        if exc.code != NAMESPACE_EXISTS:
            raise
        return False
    return True


async def ensure_schema(db: AsyncDatabase[Any], specs: Sequence[CollectionSpec]) -> SchemaResult:
    """Creates whatever of ``specs`` is missing; running it twice changes nothing."""
    result = SchemaResult()
    existing = set(await db.list_collection_names())
    for spec in specs:
        if spec.name not in existing and await create_collection(db, spec.name):
            result.created_collections.append(spec.name)
        collection = db[spec.name]
        present = {ix["name"]: ix async for ix in await collection.list_indexes()}
        for index in spec.indexes:
            options: dict[str, Any] = {"name": index.name, "unique": index.unique}
            if index.sparse:
                options["sparse"] = True
            if index.ttl_seconds is not None:
                options["expireAfterSeconds"] = index.ttl_seconds
            if index.name in present:
                if (
                    index.ttl_seconds is not None
                    and "expireAfterSeconds" not in present[index.name]
                ):
                    result.emulated_ttl.append((spec.name, index))
                continue
            try:
                await collection.create_index(list(index.keys), **options)
            except OperationFailure as exc:
                if exc.code != NOT_IMPLEMENTED or index.ttl_seconds is None:
                    raise
                options.pop("expireAfterSeconds")
                await collection.create_index(list(index.keys), **options)
                result.emulated_ttl.append((spec.name, index))
            result.created_indexes.append(f"{spec.name}.{index.name}")
    return result


class TtlSweeper:
    """Deletes expired documents where the server has no TTL indexes."""

    def __init__(
        self,
        db: AsyncDatabase[Any],
        targets: Sequence[tuple[str, IndexSpec]],
        interval_s: float = 30.0,
    ) -> None:
        self.db = db
        self.targets = list(targets)
        self.interval_s = interval_s

    async def sweep_once(self, now: datetime | None = None) -> int:
        """Deletes what has expired; returns how many documents went."""
        now = now or datetime.now(UTC)
        removed = 0
        for collection, index in self.targets:
            field_name = index.keys[0][0]
            cutoff = now - timedelta(seconds=index.ttl_seconds or 0)
            outcome = await self.db[collection].delete_many({field_name: {"$lte": cutoff}})
            removed += outcome.deleted_count
        return removed

    async def run(self) -> None:
        """Sweeps forever."""
        while True:
            try:
                await self.sweep_once()
            except Exception:  # the store may be down; health reports that
                log.debug("ttl sweep failed", exc_info=True)
            await asyncio.sleep(self.interval_s)


def _index_kind(direction: int) -> database_pb2.IndexKind.ValueType:
    return (
        database_pb2.INDEX_KIND_DESCENDING if direction < 0 else database_pb2.INDEX_KIND_ASCENDING
    )


def declaration_of(
    cluster: str, specs: Sequence[CollectionSpec], blob_paths: Sequence[str] = ()
) -> schema_pb2.SchemaDeclaration:
    """The ``SchemaDeclaration`` a cluster sends to storage: its collections and
    indexes, its Redis prefix ``lucid:<cluster>:`` and its blob paths; ``version``
    is a hash of the content."""
    declaration = schema_pb2.SchemaDeclaration(
        cluster=access_pb2.Cluster.Value(f"CLUSTER_{cluster.upper()}"),
        collections=[
            schema_pb2.CollectionSpec(
                name=spec.name,
                indexes=[
                    schema_pb2.IndexSpec(
                        name=index.name,
                        keys=[
                            database_pb2.IndexKey(field=field_name, kind=_index_kind(direction))
                            for field_name, direction in index.keys
                        ],
                        unique=index.unique,
                        sparse=index.sparse,
                        expire_after_seconds=index.ttl_seconds,
                    )
                    for index in spec.indexes
                ],
            )
            for spec in specs
        ],
        redis_prefixes=[
            schema_pb2.RedisPrefixSpec(
                prefix=f"lucid:{cluster}:", description=f"keys of the {cluster} cluster"
            )
        ],
        blob_paths=[schema_pb2.BlobPathSpec(path=path) for path in blob_paths],
    )
    declaration.version = hashlib.sha256(
        declaration.SerializeToString(deterministic=True)
    ).hexdigest()[:16]
    return declaration


Send = Callable[[schema_pb2.DeclareSchemaRequest], Awaitable[object]]


class SchemaDeclarer:
    """Sends a cluster's declaration to storage until storage has it.

    Best effort: storage may start later or be down; the declarer retries with
    exponential backoff (``first_delay_s`` doubling up to ``max_delay_s``) and
    stops after the first success. A cluster serves regardless.
    """

    def __init__(
        self,
        declaration: schema_pb2.SchemaDeclaration,
        send: Send,
        *,
        first_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
    ) -> None:
        self.declaration = declaration
        self.send = send
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.attempts = 0
        self.declared = asyncio.Event()

    async def run(self) -> None:
        """Sends until it succeeds."""
        delay = self.first_delay_s
        request = schema_pb2.DeclareSchemaRequest(declaration=self.declaration)
        while True:
            self.attempts += 1
            try:
                await self.send(request)
            except Exception as exc:  # storage down or not started yet: try again later
                log.debug("schema declaration not delivered: %s", exc)
            else:
                self.declared.set()
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay_s)
