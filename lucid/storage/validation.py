"""ValidateSchema and InitSchema: every cluster's declaration against the stores.

MongoDB: declared collections and indexes are compared by name and spec (keys,
unique; ``sparse`` only where the server keeps it; TTL where the server has it,
otherwise reported as emulated by the runtime's sweeper). Redis: reachable,
``KEYS`` disabled, every sampled key under a declared ``lucid:<cluster>:``
prefix (or ``lucid:events:``), TTL rules of prefixes. The blob volume: present,
writable, below its usage thresholds, declared paths present, nothing
undeclared at its top level. Totals are never compared (spec 08 §3).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from google.protobuf import json_format
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from lucid.common.v1 import access_pb2
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.schema import NOT_IMPLEMENTED, create_collection, is_ferretdb
from lucid.storage.store.probes import BlobVolume
from lucid.storage.store.search import SearchEngine, index_settings
from lucid.storage.usage import measure, probe_writable
from lucid.storage.v1 import database_pb2, schema_pb2, volume_pb2

MONGODB = schema_pb2.STORE_KIND_MONGODB
REDIS = schema_pb2.STORE_KIND_REDIS
BLOB = schema_pb2.STORE_KIND_BLOB_VOLUME
SEARCH = schema_pb2.STORE_KIND_SEARCH
Cluster: TypeAlias = access_pb2.Cluster.ValueType
EVENTS_PREFIX = "lucid:events:"
"""Redis Streams shared by every cluster (DECISIONS: events)."""
PROBLEMS = frozenset(
    {
        schema_pb2.FINDING_KIND_MISSING,
        schema_pb2.FINDING_KIND_EXTRA,
        schema_pb2.FINDING_KIND_MISMATCH,
        schema_pb2.FINDING_KIND_UNHEALTHY,
    }
)
DEFAULT_SAMPLE = 10_000

_KIND_OF_VALUE: dict[Any, database_pb2.IndexKind.ValueType] = {
    1: database_pb2.INDEX_KIND_ASCENDING,
    -1: database_pb2.INDEX_KIND_DESCENDING,
    "2d": database_pb2.INDEX_KIND_GEO_2D,
    "2dsphere": database_pb2.INDEX_KIND_GEO_2DSPHERE,
    "text": database_pb2.INDEX_KIND_TEXT,
    "hashed": database_pb2.INDEX_KIND_HASHED,
}
VALUE_OF_KIND: dict[database_pb2.IndexKind.ValueType, int | str] = {
    database_pb2.INDEX_KIND_ASCENDING: 1,
    database_pb2.INDEX_KIND_DESCENDING: -1,
    database_pb2.INDEX_KIND_GEO_2D: "2d",
    database_pb2.INDEX_KIND_GEO_2DSPHERE: "2dsphere",
    database_pb2.INDEX_KIND_TEXT: "text",
    database_pb2.INDEX_KIND_HASHED: "hashed",
}


def index_keys(key: dict[str, Any]) -> list[database_pb2.IndexKey]:
    """An index's ``key`` document as ``IndexKey``s."""
    keys = []
    for name, value in key.items():
        number = int(value) if isinstance(value, int | float) else value
        kind = _KIND_OF_VALUE.get(
            1 if isinstance(number, int) and number > 0 else number,
            database_pb2.INDEX_KIND_UNSPECIFIED,
        )
        keys.append(database_pb2.IndexKey(field=name, kind=kind))
    return keys


def index_of(info: dict[str, Any]) -> database_pb2.Index:
    """An entry of ``listIndexes`` as an ``Index``."""
    index = database_pb2.Index(
        name=str(info["name"]),
        keys=index_keys(dict(info["key"])),
        unique=bool(info.get("unique", False)),
        sparse=bool(info.get("sparse", False)),
    )
    if "expireAfterSeconds" in info:
        index.expire_after_seconds = int(info["expireAfterSeconds"])
    return index


def spec_of(index: database_pb2.Index) -> schema_pb2.IndexSpec:
    """An existing index as a declaration would state it."""
    spec = schema_pb2.IndexSpec(
        name=index.name, keys=index.keys, unique=index.unique, sparse=index.sparse
    )
    if index.HasField("expire_after_seconds"):
        spec.expire_after_seconds = index.expire_after_seconds
    return spec


def _keys_text(keys: Iterable[database_pb2.IndexKey]) -> str:
    return ", ".join(f"{k.field}: {VALUE_OF_KIND.get(k.kind, '?')}" for k in keys)


@dataclass
class ServerTraits:
    """What the MongoDB server keeps of index options."""

    keeps_sparse: bool = True
    has_ttl: bool = True
    has_validators: bool = True

    @classmethod
    async def of(cls, db: AsyncDatabase[dict[str, Any]]) -> ServerTraits:
        """FerretDB drops ``sparse``, has no TTL indexes and no validators."""
        if await is_ferretdb(db):
            return cls(keeps_sparse=False, has_ttl=False, has_validators=False)
        return cls()


@dataclass
class IndexComparison:
    """How one declared collection's indexes compare with the server's."""

    missing: list[schema_pb2.IndexSpec] = field(default_factory=list)
    extra: list[database_pb2.Index] = field(default_factory=list)
    mismatched: list[schema_pb2.IndexMismatch] = field(default_factory=list)
    emulated: list[str] = field(default_factory=list)
    """Declared TTL indexes present without TTL where the server has none (also matching)."""
    matching: int = 0


def compare_indexes(
    collection: str,
    declared: Sequence[schema_pb2.IndexSpec],
    actual: Sequence[database_pb2.Index],
    traits: ServerTraits,
) -> IndexComparison:
    """Declared indexes against ``listIndexes``, by name and spec."""
    result = IndexComparison()
    present = {index.name: index for index in actual}
    for spec in declared:
        index = present.get(spec.name)
        if index is None:
            result.missing.append(spec)
            continue
        differences = []
        if [(k.field, k.kind) for k in spec.keys] != [(k.field, k.kind) for k in index.keys]:
            differences.append("keys")
        if spec.unique != index.unique:
            differences.append("unique")
        if traits.keeps_sparse and spec.sparse != index.sparse:
            differences.append("sparse")
        declared_ttl = spec.expire_after_seconds if spec.HasField("expire_after_seconds") else None
        actual_ttl = index.expire_after_seconds if index.HasField("expire_after_seconds") else None
        if declared_ttl != actual_ttl:
            if declared_ttl is not None and actual_ttl is None and not traits.has_ttl:
                result.emulated.append(spec.name)
            else:
                differences.append("expire_after_seconds")
        if differences:
            result.mismatched.append(
                schema_pb2.IndexMismatch(
                    collection_name=collection,
                    index_name=spec.name,
                    expected=spec,
                    actual=spec_of(index),
                    differences=differences,
                )
            )
        else:
            result.matching += 1
    names = {spec.name for spec in declared}
    result.extra = [i for i in actual if i.name != "_id_" and i.name not in names]
    return result


async def list_indexes(
    db: AsyncDatabase[dict[str, Any]], collection: str
) -> list[database_pb2.Index]:
    """The indexes of a collection."""
    return [index_of(dict(info)) async for info in await db[collection].list_indexes()]


async def collection_validators(db: AsyncDatabase[dict[str, Any]]) -> dict[str, Any]:
    """Each collection's validator document (empty when it has none)."""
    found: dict[str, Any] = {}
    async for info in await db.list_collections():
        found[str(info["name"])] = dict(info.get("options", {}).get("validator", {}))
    return found


def _finding(
    store: schema_pb2.StoreKind.ValueType,
    kind: schema_pb2.FindingKind.ValueType,
    obj: str,
    message: str,
    *,
    expected: str = "",
    actual: str = "",
) -> schema_pb2.SchemaFinding:
    return schema_pb2.SchemaFinding(
        store=store, kind=kind, object=obj, message=message, expected=expected, actual=actual
    )


class SchemaValidator:
    """Compares declarations with MongoDB, Redis and the blob volume."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        redis: aioredis.Redis,
        blob: BlobVolume,
        timeout_s: float = 5.0,
        search: SearchEngine | None = None,
    ) -> None:
        self.db = db
        self.redis = redis
        self.blob = blob
        self.timeout_s = timeout_s
        self.search = search

    async def validate(
        self,
        declarations: Sequence[schema_pb2.SchemaDeclaration],
        *,
        clusters: Iterable[Cluster] = (),
        sample_size: int = 0,
        now: datetime,
    ) -> schema_pb2.ValidateSchemaResponse:
        """The full report; ``LUCID_ERR_5003`` when MongoDB does not answer."""
        try:
            return await self._report(
                declarations, clusters=clusters, sample_size=sample_size, now=now
            )
        except PyMongoError as exc:
            raise LucidError(
                ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, f"MongoDB does not answer: {exc}"
            ) from exc

    async def _report(
        self,
        declarations: Sequence[schema_pb2.SchemaDeclaration],
        *,
        clusters: Iterable[Cluster],
        sample_size: int,
        now: datetime,
    ) -> schema_pb2.ValidateSchemaResponse:
        wanted = set(clusters)
        chosen = [d for d in declarations if not wanted or d.cluster in wanted]
        response = schema_pb2.ValidateSchemaResponse()
        response.check_time.FromDatetime(now)
        traits = await ServerTraits.of(self.db)
        names = set(await self.db.list_collection_names())
        validators = (
            await collection_validators(self.db)
            if any(c.HasField("validator") for d in chosen for c in d.collections)
            else {}
        )
        for declaration in chosen:
            response.reports.append(
                await self._mongo_report(declaration, names, validators, traits)
            )
        declared = {c.name for d in declarations for c in d.collections}
        response.undeclared_collections.extend(
            sorted(n for n in names if n not in declared and not n.startswith("system."))
        )
        reports = {r.cluster: r for r in response.reports}
        await self._redis(declarations, reports, response, sample_size or DEFAULT_SAMPLE)
        await asyncio.to_thread(self._blob, declarations, reports, response)
        if self.search is not None:
            await asyncio.to_thread(self._search, self.search, declarations, reports, response)
        for report in response.reports:
            report.valid = not (
                report.missing_collections
                or report.missing_indexes
                or report.extra_indexes
                or report.mismatched_indexes
                or any(f.kind in PROBLEMS for f in report.findings)
            )
        response.valid = (
            all(r.valid for r in response.reports)
            and not response.undeclared_collections
            and not response.undeclared_key_prefixes
            and not response.undeclared_blob_paths
            and not response.undeclared_search_indices
            and not any(f.kind in PROBLEMS for f in response.store_findings)
        )
        return response

    async def _mongo_report(
        self,
        declaration: schema_pb2.SchemaDeclaration,
        names: set[str],
        validators: dict[str, Any],
        traits: ServerTraits,
    ) -> schema_pb2.ClusterSchemaReport:
        report = schema_pb2.ClusterSchemaReport(cluster=declaration.cluster)
        for collection in declaration.collections:
            if collection.name not in names:
                report.missing_collections.append(collection.name)
                continue
            actual = await list_indexes(self.db, collection.name)
            comparison = compare_indexes(collection.name, collection.indexes, actual, traits)
            report.missing_indexes.extend(
                schema_pb2.IndexRef(collection_name=collection.name, index_name=s.name, keys=s.keys)
                for s in comparison.missing
            )
            report.extra_indexes.extend(
                schema_pb2.IndexRef(collection_name=collection.name, index_name=i.name, keys=i.keys)
                for i in comparison.extra
            )
            report.mismatched_indexes.extend(comparison.mismatched)
            report.findings.extend(
                _finding(
                    MONGODB,
                    schema_pb2.FINDING_KIND_EMULATED,
                    f"{collection.name}.{name}",
                    "TTL index: the server has no TTL; the runtime's sweeper deletes expired "
                    "documents",
                )
                for name in comparison.emulated
            )
            if collection.HasField("validator"):
                report.findings.extend(self._validator_findings(collection, validators, traits))
        return report

    def _validator_findings(
        self,
        collection: schema_pb2.CollectionSpec,
        validators: dict[str, Any],
        traits: ServerTraits,
    ) -> list[schema_pb2.SchemaFinding]:
        declared = json_format.MessageToDict(collection.validator)
        actual = validators.get(collection.name, {})
        if _canonical(declared) == _canonical(actual):
            return []
        if not actual and not traits.has_validators:
            return [
                _finding(
                    MONGODB,
                    schema_pb2.FINDING_KIND_EMULATED,
                    collection.name,
                    "validator: the server has no validators; the owning cluster validates in code",
                )
            ]
        return [
            _finding(
                MONGODB,
                schema_pb2.FINDING_KIND_MISMATCH,
                collection.name,
                "validator differs from the declaration",
                expected=_canonical(declared),
                actual=_canonical(actual),
            )
        ]

    async def _redis(
        self,
        declarations: Sequence[schema_pb2.SchemaDeclaration],
        reports: dict[Cluster, schema_pb2.ClusterSchemaReport],
        response: schema_pb2.ValidateSchemaResponse,
        sample_size: int,
    ) -> None:
        try:
            await asyncio.wait_for(self.redis.ping(), self.timeout_s)
        except Exception as exc:
            response.store_findings.append(
                _finding(REDIS, schema_pb2.FINDING_KIND_UNHEALTHY, "redis", f"unreachable: {exc}")
            )
            return
        if await keys_enabled(self.redis):
            response.store_findings.append(
                _finding(
                    REDIS,
                    schema_pb2.FINDING_KIND_UNHEALTHY,
                    "KEYS",
                    'the KEYS command is enabled; disable it (rename-command KEYS "")',
                    expected="disabled",
                    actual="enabled",
                )
            )
        rules = [(d.cluster, p) for d in declarations for p in d.redis_prefixes]
        prefixes = {p.prefix for _, p in rules} | {EVENTS_PREFIX}
        undeclared: set[str] = set()
        checked: list[tuple[str, Cluster, schema_pb2.RedisPrefixSpec]] = []
        scanned = 0
        async for raw in self.redis.scan_iter(count=1000):
            key = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            scanned += 1
            if not any(key.startswith(p) for p in prefixes):
                undeclared.add(key_prefix(key))
            for cluster, rule in rules:
                if key.startswith(rule.prefix) and (rule.ttl_required or rule.max_ttl_seconds):
                    checked.append((key, cluster, rule))
            if scanned >= sample_size:
                break
        response.undeclared_key_prefixes.extend(sorted(undeclared))
        await self._ttl_rules(checked, reports)

    async def _ttl_rules(
        self,
        checked: list[tuple[str, Cluster, schema_pb2.RedisPrefixSpec]],
        reports: dict[Cluster, schema_pb2.ClusterSchemaReport],
    ) -> None:
        """Findings for sampled keys that break their prefix's TTL rule."""
        if not checked:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, _, _ in checked:
            pipe.ttl(key)
        ttls = await pipe.execute()
        for (key, cluster, rule), ttl in zip(checked, ttls, strict=True):
            report = reports.get(cluster)
            if report is None:
                continue
            if rule.ttl_required and ttl == -1:
                report.findings.append(
                    _finding(
                        REDIS,
                        schema_pb2.FINDING_KIND_MISMATCH,
                        key,
                        f"no TTL, but keys under {rule.prefix} must expire",
                    )
                )
            elif rule.max_ttl_seconds and ttl > rule.max_ttl_seconds:
                report.findings.append(
                    _finding(
                        REDIS,
                        schema_pb2.FINDING_KIND_MISMATCH,
                        key,
                        f"TTL {ttl} s over the bound {rule.max_ttl_seconds} s",
                    )
                )

    def _blob(
        self,
        declarations: Sequence[schema_pb2.SchemaDeclaration],
        reports: dict[Cluster, schema_pb2.ClusterSchemaReport],
        response: schema_pb2.ValidateSchemaResponse,
    ) -> None:
        root = self.blob.path
        try:
            probe_writable(root)
            usage = measure(root, self.blob.quota_bytes)
        except OSError as exc:
            response.store_findings.append(
                _finding(BLOB, schema_pb2.FINDING_KIND_UNHEALTHY, str(root), f"not usable: {exc}")
            )
            return
        level = usage.alert_level
        if level != volume_pb2.ALERT_LEVEL_UNSPECIFIED:
            critical = level == volume_pb2.ALERT_LEVEL_CRITICAL
            response.store_findings.append(
                _finding(
                    BLOB,
                    schema_pb2.FINDING_KIND_UNHEALTHY
                    if critical
                    else schema_pb2.FINDING_KIND_WARNING,
                    str(root),
                    f"{usage.usage_percent:.1f} % used ({'critical' if critical else 'warning'}); "
                    f"{usage.free_bytes} bytes free",
                    expected="< 80 %",
                    actual=f"{usage.usage_percent:.1f} %",
                )
            )
        tops: set[str] = set()
        for declaration in declarations:
            for spec in declaration.blob_paths:
                tops.add(spec.path.strip("/").split("/")[0])
                if not (root / spec.path).exists() and declaration.cluster in reports:
                    reports[declaration.cluster].findings.append(
                        _finding(
                            BLOB,
                            schema_pb2.FINDING_KIND_MISSING,
                            spec.path,
                            f"declared path {spec.path} does not exist on the blob volume",
                        )
                    )
        response.undeclared_blob_paths.extend(
            sorted(
                p.name for p in root.iterdir() if not p.name.startswith(".") and p.name not in tops
            )
        )

    def _search(
        self,
        engine: SearchEngine,
        declarations: Sequence[schema_pb2.SchemaDeclaration],
        reports: dict[Cluster, schema_pb2.ClusterSchemaReport],
        response: schema_pb2.ValidateSchemaResponse,
    ) -> None:
        present = set(engine.names())
        declared: set[str] = set()
        for declaration in declarations:
            for spec in declaration.search_indices:
                declared.add(spec.name)
                if spec.name not in present and declaration.cluster in reports:
                    reports[declaration.cluster].findings.append(
                        _finding(
                            SEARCH,
                            schema_pb2.FINDING_KIND_MISSING,
                            spec.name,
                            f"declared search index {spec.name} does not exist",
                        )
                    )
        response.undeclared_search_indices.extend(sorted(present - declared))

    async def init(
        self,
        declarations: Sequence[schema_pb2.SchemaDeclaration],
        *,
        dry_run: bool,
    ) -> schema_pb2.InitSchemaResponse:
        """Creates what is declared and missing; never drops or changes what exists."""
        response = schema_pb2.InitSchemaResponse(dry_run=dry_run)
        traits = await ServerTraits.of(self.db)
        names = set(await self.db.list_collection_names())
        for declaration in declarations:
            if self.search is not None:
                await asyncio.to_thread(self._init_search, self.search, declaration, response)
            for collection in declaration.collections:
                await self._init_collection(
                    declaration.cluster, collection, names, traits, response
                )
            for spec in declaration.blob_paths:
                path = self.blob.path / spec.path
                if path.exists():
                    response.unchanged_count += 1
                    continue
                if not dry_run:
                    await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
                response.changes.append(
                    schema_pb2.SchemaChange(
                        cluster=declaration.cluster,
                        store=BLOB,
                        action=schema_pb2.SCHEMA_ACTION_CREATE_PATH,
                        object=spec.path,
                    )
                )
        return response

    def _init_search(
        self,
        engine: SearchEngine,
        declaration: schema_pb2.SchemaDeclaration,
        response: schema_pb2.InitSchemaResponse,
    ) -> None:
        present = set(engine.names())
        for spec in declaration.search_indices:
            if spec.name in present:
                response.unchanged_count += 1
                continue
            if not response.dry_run:
                engine.create(spec.name, index_settings(spec))
            response.changes.append(
                schema_pb2.SchemaChange(
                    cluster=declaration.cluster,
                    store=SEARCH,
                    action=schema_pb2.SCHEMA_ACTION_CREATE_SEARCH_INDEX,
                    object=spec.name,
                )
            )

    async def _init_collection(
        self,
        cluster: Cluster,
        collection: schema_pb2.CollectionSpec,
        names: set[str],
        traits: ServerTraits,
        response: schema_pb2.InitSchemaResponse,
    ) -> None:
        dry_run = response.dry_run
        if collection.name in names:
            response.unchanged_count += 1
            actual = await list_indexes(self.db, collection.name)
        else:
            if not dry_run:
                await create_collection(self.db, collection.name)
            response.changes.append(
                schema_pb2.SchemaChange(
                    cluster=cluster,
                    store=MONGODB,
                    action=schema_pb2.SCHEMA_ACTION_CREATE_COLLECTION,
                    object=collection.name,
                )
            )
            actual = []
        comparison = compare_indexes(collection.name, collection.indexes, actual, traits)
        response.unchanged_count += comparison.matching  # emulated TTLs included
        response.conflicts.extend(
            f"{m.collection_name}.{m.index_name}: {', '.join(m.differences)} differ"
            for m in comparison.mismatched
        )
        for spec in comparison.missing:
            detail = _keys_text(spec.keys)
            if not dry_run:
                detail = await create_index(self.db, collection.name, spec)
            response.changes.append(
                schema_pb2.SchemaChange(
                    cluster=cluster,
                    store=MONGODB,
                    action=schema_pb2.SCHEMA_ACTION_CREATE_INDEX,
                    object=f"{collection.name}.{spec.name}",
                    detail=detail,
                )
            )


async def create_index(
    db: AsyncDatabase[dict[str, Any]], collection: str, spec: schema_pb2.IndexSpec
) -> str:
    """Creates one declared index; a TTL the server lacks becomes a plain index (the
    runtime sweeps). Returns a description of what was created."""
    keys = [(k.field, VALUE_OF_KIND[k.kind]) for k in spec.keys]
    options: dict[str, Any] = {"name": spec.name, "unique": spec.unique}
    if spec.sparse:
        options["sparse"] = True
    if spec.HasField("expire_after_seconds"):
        options["expireAfterSeconds"] = spec.expire_after_seconds
    detail = _keys_text(spec.keys)
    try:
        await db[collection].create_index(keys, **options)
    except OperationFailure as exc:
        if exc.code != NOT_IMPLEMENTED or "expireAfterSeconds" not in options:
            raise
        options.pop("expireAfterSeconds")
        await db[collection].create_index(keys, **options)
        detail += " (TTL emulated)"
    return detail


async def keys_enabled(redis: aioredis.Redis) -> bool:
    """Whether Redis still accepts ``KEYS`` (production disables it)."""
    try:
        await redis.execute_command(  # type: ignore[no-untyped-call]
            "KEYS", "lucid:storage:probe:keys-disabled-check"
        )
    except aioredis.ResponseError:
        return False
    return True


def key_prefix(key: str) -> str:
    """``lucid:sessions:abc`` → ``lucid:sessions:``; ``other:x`` → ``other:``."""
    parts = key.split(":")
    if len(parts) >= 3 and parts[0] == "lucid":
        return f"{parts[0]}:{parts[1]}:"
    return f"{parts[0]}:" if len(parts) > 1 else key


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
