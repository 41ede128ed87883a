"""``lucid db validate``: the "validate all databases" step of the coordination guide.

Runs the same comparison as ``SchemaService.ValidateSchema``, in the CLI's own
process, against the stores of the settings (those ``lucid up`` runs: the same
``LUCID_*`` variables and ``lucid.toml``). The declarations are the ones the
storage cluster recorded (every cluster's server sends its own at start, see
``lucid.runtime.schema.SchemaDeclarer``), read from storage's collection
``storage_schema_declarations``; with ``--from-code``, or when storage has
recorded none yet (the stores are up but the mesh is not), the declarations
are built from the cluster packages on disk. Working in-process means no
token is needed and the check also runs while the mesh is down.

Exit status: 0 when everything matches, 1 when the report shows problems,
2 when MongoDB cannot be reached.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from google.protobuf import json_format
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from lucid.lib.clock import SystemClock
from lucid.runtime.config import Settings
from lucid.runtime.errors import LucidError
from lucid.storage.schema import DECLARATIONS, VOLUMES
from lucid.storage.store.declarations import DeclarationStore, cluster_name
from lucid.storage.store.probes import BlobVolume
from lucid.storage.store.search import SearchEngine
from lucid.storage.usage import measure
from lucid.storage.v1 import schema_pb2, volume_pb2
from lucid.storage.validation import PROBLEMS, VALUE_OF_KIND, SchemaValidator
from lucid.storage.volumes import BLOB_VOLUME_NAME, MAX_QUOTA

OK, PROBLEMS_FOUND, UNREACHABLE = 0, 1, 2
_KIND = {
    schema_pb2.FINDING_KIND_MISSING: "missing",
    schema_pb2.FINDING_KIND_EXTRA: "extra",
    schema_pb2.FINDING_KIND_MISMATCH: "mismatch",
    schema_pb2.FINDING_KIND_UNHEALTHY: "unhealthy",
    schema_pb2.FINDING_KIND_WARNING: "warning",
    schema_pb2.FINDING_KIND_EMULATED: "emulated",
}


def _keys(keys: Sequence[Any]) -> str:
    return ", ".join(f"{k.field}: {VALUE_OF_KIND.get(k.kind, '?')}" for k in keys)


def _finding(finding: schema_pb2.SchemaFinding) -> str:
    mark = "!" if finding.kind in PROBLEMS else "·"
    text = f"{mark} {_KIND.get(finding.kind, '?')}: {finding.object}: {finding.message}"
    if finding.expected or finding.actual:
        text += f" (expected {finding.expected or '-'}, found {finding.actual or '-'})"
    return text


def format_report(
    response: schema_pb2.ValidateSchemaResponse,
    settings: Settings,
    source: str,
    blob_line: str,
) -> str:
    """The report as people read it, one section per store."""
    lines = [f"MongoDB  {settings.mongodb_uri} database {settings.mongodb_db}"]
    lines.append(f"  declarations: {source}")
    for report in response.reports:
        name = cluster_name(report.cluster)
        lines.append(f"  {name:<11} {'ok' if report.valid else 'PROBLEMS'}")
        lines += [f"    ! missing collection {c}" for c in report.missing_collections]
        lines += [
            f"    ! missing index {i.collection_name}.{i.index_name} ({_keys(i.keys)})"
            for i in report.missing_indexes
        ]
        lines += [
            f"    ! extra index {i.collection_name}.{i.index_name} ({_keys(i.keys)})"
            for i in report.extra_indexes
        ]
        lines += [
            f"    ! index {m.collection_name}.{m.index_name} differs in {', '.join(m.differences)}"
            for m in report.mismatched_indexes
        ]
        lines += [
            f"    {_finding(f)}"
            for f in report.findings
            if f.store == schema_pb2.STORE_KIND_MONGODB
        ]
    if response.undeclared_collections:
        lines.append(f"  ! undeclared collections: {', '.join(response.undeclared_collections)}")
    lines.append(f"Redis    {settings.redis_url}")
    redis_findings = [f for f in response.store_findings if f.store == schema_pb2.STORE_KIND_REDIS]
    redis_findings += [
        f for r in response.reports for f in r.findings if f.store == schema_pb2.STORE_KIND_REDIS
    ]
    if not redis_findings:
        lines.append("  reachable; KEYS disabled")
    lines += [f"  {_finding(f)}" for f in redis_findings]
    if response.undeclared_key_prefixes:
        lines.append(
            f"  ! keys under undeclared prefixes: {', '.join(response.undeclared_key_prefixes)}"
        )
    lines.append(f"Blob volume  {settings.blob_dir}")
    lines.append(f"  {blob_line}")
    lines += [
        f"  {_finding(f)}"
        for f in response.store_findings
        if f.store == schema_pb2.STORE_KIND_BLOB_VOLUME
    ]
    lines += [
        f"  {_finding(f)}"
        for r in response.reports
        for f in r.findings
        if f.store == schema_pb2.STORE_KIND_BLOB_VOLUME
    ]
    if response.undeclared_blob_paths:
        lines.append(f"  ! undeclared paths: {', '.join(response.undeclared_blob_paths)}")
    lines.append(f"Search   {settings.var_dir / 'search'}")
    lines += [
        f"  {_finding(f)}"
        for r in response.reports
        for f in r.findings
        if f.store == schema_pb2.STORE_KIND_SEARCH
    ]
    if response.undeclared_search_indices:
        lines.append(f"  ! undeclared indices: {', '.join(response.undeclared_search_indices)}")
    lines.append("")
    lines.append("VALID" if response.valid else "INVALID: see the lines marked !")
    return "\n".join(lines)


async def validate(
    settings: Settings,
    *,
    code_declarations: Sequence[schema_pb2.SchemaDeclaration],
    from_code: bool = False,
    as_json: bool = False,
) -> tuple[int, str]:
    """Runs the check; returns the exit status and the text to print."""
    timeout_ms = max(int(settings.dependency_timeout_s * 2000), 1000)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
    )
    redis = aioredis.from_url(
        settings.redis_url,
        socket_timeout=settings.dependency_timeout_s * 2,
        socket_connect_timeout=settings.dependency_timeout_s * 2,
    )
    try:
        db = client[settings.mongodb_db]
        try:
            recorded = (
                [] if from_code else await DeclarationStore(db[DECLARATIONS], SystemClock()).all()
            )
            volume = await db[VOLUMES].find_one({"name": BLOB_VOLUME_NAME})
        except (PyMongoError, LucidError) as exc:
            return UNREACHABLE, f"MongoDB at {settings.mongodb_uri} does not answer: {exc}"
        declarations = recorded or list(code_declarations)
        source = (
            f"recorded by storage ({len(recorded)} clusters)"
            if recorded
            else f"from the code ({len(declarations)} clusters)"
        )
        quota = int(volume["size_bytes"]) if volume else MAX_QUOTA
        blob = BlobVolume(settings.blob_dir, quota)
        index_file = settings.var_dir / "search" / "search.db"
        engine = SearchEngine(index_file) if index_file.exists() else None
        validator = SchemaValidator(db, redis, blob, settings.dependency_timeout_s * 5, engine)
        try:
            response = await validator.validate(declarations, now=SystemClock().now())
        except (PyMongoError, LucidError) as exc:
            return UNREACHABLE, f"MongoDB at {settings.mongodb_uri} does not answer: {exc}"
        finally:
            if engine is not None:
                engine.close()
        status = OK if response.valid else PROBLEMS_FOUND
        if as_json:
            body = json_format.MessageToDict(response, preserving_proto_field_name=True)
            return status, json.dumps({"declarations": source, **body}, indent=2)
        return status, format_report(response, settings, source, _blob_line(blob))
    finally:
        await client.close()
        await redis.aclose()


def _blob_line(blob: BlobVolume) -> str:
    try:
        usage = measure(blob.path, blob.quota_bytes)
    except OSError:
        return "(see below)"
    level = {
        volume_pb2.ALERT_LEVEL_WARNING: " (warning)",
        volume_pb2.ALERT_LEVEL_CRITICAL: " (critical)",
    }.get(usage.alert_level, "")
    return (
        f"{usage.usage_percent:.1f} % used{level}; {usage.free_bytes} bytes free "
        f"of a {usage.quota_bytes}-byte quota; {usage.file_count} files"
    )
