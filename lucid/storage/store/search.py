"""The search engine in place of Elasticsearch (DECISIONS defers it): SQLite with FTS5
in ``var/search/search.db`` (spec 08 §8).

An index holds JSON documents (``docs``) and, for every string field, its text
in an FTS5 table (one row per document and field), so ``match`` runs on the
full-text index of that field while ``term``, ``terms`` and ``range`` compare
JSON values. Queries are a subset of the Elasticsearch DSL: ``match_all``,
``term``, ``terms``, ``match``, ``range`` (gt, gte, lt, lte) and ``bool`` (must,
filter, should, must_not, minimum_should_match); anything else is
INVALID_ARGUMENT. Hits are filter-context (score 1), in indexing order unless
sorted. Documents come from the index's source collection (``reindex``). One
node: an index asking for replicas is yellow, otherwise green.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import Binary
from google.protobuf import json_format

from lucid.runtime.errors import ErrorCode, LucidError, invalid_argument

FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
TOKEN = re.compile(r"\w+", re.UNICODE)
RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS indices (
    name TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS docs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    index_name TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    source TEXT NOT NULL,
    indexed_at REAL NOT NULL,
    UNIQUE (index_name, doc_id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS texts USING fts5(
    index_name UNINDEXED, doc_id UNINDEXED, field UNINDEXED, body
);
"""


def plain(value: Any) -> Any:
    """A BSON value as JSON: ids and decimals as strings, times as ISO 8601, bytes base64."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Binary | bytes):
        return base64.b64encode(bytes(value)).decode()
    return str(value)  # ObjectId, Decimal128 and the rest


def index_settings(
    spec: Any,
    *,
    shards: int = 1,
    replicas: int = 0,
    source_collection: str = "",
) -> dict[str, Any]:
    """The stored settings of a new index from a ``SearchIndexSpec`` or a
    ``CreateSearchIndexRequest`` (mappings, refresh interval, retention)."""
    return {
        "shards": shards,
        "replicas": replicas,
        "mappings": json_format.MessageToDict(spec.mappings),
        "refresh_s": spec.refresh_interval.ToTimedelta().total_seconds() or 1.0,
        "retention_s": spec.retention.ToTimedelta().total_seconds(),
        "source_collection": source_collection,
        "create_time": datetime.now(UTC).isoformat(),
        "last_reindex": None,
    }


def _texts(source: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in source.items():
        path = f"{prefix}{key}"
        if isinstance(value, str):
            yield path, value
        elif isinstance(value, Mapping):
            yield from _texts(value, f"{path}.")
        elif isinstance(value, list):
            strings = [v for v in value if isinstance(v, str)]
            if strings:
                yield path, " ".join(strings)


def _field(name: Any) -> str:
    if not isinstance(name, str) or not FIELD.match(name):
        raise invalid_argument("query", f"bad field name {name!r}")
    return name


def _single(clause: Any, kind: str) -> tuple[str, Any]:
    if not isinstance(clause, Mapping) or len(clause) != 1:
        raise invalid_argument("query", f"{kind} takes exactly one field")
    ((name, value),) = clause.items()
    return _field(name), value


@dataclass
class Compiled:
    """A query as a SQL condition on ``d`` (the docs row) and its parameters."""

    sql: str
    params: list[Any]


def _term(clause: Any) -> Compiled:
    name, value = _single(clause, "term")
    if isinstance(value, Mapping):
        value = value.get("value")
    return Compiled("json_extract(d.source, ?) = ?", [f"$.{name}", value])


def _terms(clause: Any) -> Compiled:
    name, values = _single(clause, "terms")
    if not isinstance(values, list) or not values:
        raise invalid_argument("query", "terms takes a non-empty list")
    marks = ", ".join("?" for _ in values)
    return Compiled(f"json_extract(d.source, ?) IN ({marks})", [f"$.{name}", *values])


def _range(clause: Any) -> Compiled:
    name, bounds = _single(clause, "range")
    if not isinstance(bounds, Mapping) or not bounds or set(bounds) - set(RANGE_OPS):
        raise invalid_argument("query", "range takes gt, gte, lt or lte")
    parts = [f"json_extract(d.source, ?) {RANGE_OPS[op]} ?" for op in bounds]
    params: list[Any] = []
    for value in bounds.values():
        params += [f"$.{name}", value]
    return Compiled(" AND ".join(parts), params)


def _match(clause: Any) -> Compiled:
    name, text = _single(clause, "match")
    if isinstance(text, Mapping):
        text = text.get("query", "")
    tokens = TOKEN.findall(str(text))
    if not tokens:
        return Compiled("0", [])
    expression = " OR ".join('"' + t.replace('"', '""') + '"' for t in tokens)
    return Compiled(
        "d.doc_id IN (SELECT doc_id FROM texts WHERE texts MATCH ? "
        "AND index_name = d.index_name AND field = ?)",
        [expression, name],
    )


def compile_query(query: Mapping[str, Any]) -> Compiled:
    """Translates a DSL query; raises INVALID_ARGUMENT for what it does not support."""
    if not isinstance(query, Mapping) or len(query) != 1:
        raise invalid_argument("query", "a query is an object with one clause")
    ((kind, clause),) = query.items()
    compilers = {
        "match_all": lambda _: Compiled("1", []),
        "term": _term,
        "terms": _terms,
        "range": _range,
        "match": _match,
        "bool": _compile_bool,
    }
    compiler = compilers.get(kind)
    if compiler is None:
        raise invalid_argument("query", f"unsupported query {kind!r}")
    return compiler(clause)


def _compile_bool(clause: Any) -> Compiled:
    if not isinstance(clause, Mapping):
        raise invalid_argument("query", "bool takes an object")
    unknown = set(clause) - {"must", "filter", "should", "must_not", "minimum_should_match"}
    if unknown:
        raise invalid_argument("query", f"unsupported bool part {sorted(unknown)[0]!r}")

    def parts(key: str) -> list[Compiled]:
        value = clause.get(key, [])
        items = value if isinstance(value, list) else [value]
        return [compile_query(item) for item in items]

    required = parts("must") + parts("filter")
    should = parts("should")
    excluded = parts("must_not")
    sql: list[str] = []
    params: list[Any] = []
    for part in required:
        sql.append(f"({part.sql})")
        params += part.params
    if should:
        minimum = int(clause.get("minimum_should_match", 0 if required else 1))
        if minimum:
            counted = " + ".join(f"(CASE WHEN ({p.sql}) THEN 1 ELSE 0 END)" for p in should)
            sql.append(f"({counted}) >= ?")
            for part in should:
                params += part.params
            params.append(minimum)
    for part in excluded:
        sql.append(f"NOT ({part.sql})")
        params += part.params
    return Compiled(" AND ".join(sql) or "1", params)


@dataclass
class QueryStats:
    """Query counters of one index (since this process started)."""

    queries: int = 0
    total_s: float = 0.0


class SearchEngine:
    """The SQLite index; calls are blocking (run them in a thread)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.stats: dict[str, QueryStats] = {}

    def close(self) -> None:
        """Closes the database."""
        with self._lock:
            self._db.close()

    def create(self, name: str, settings: dict[str, Any]) -> None:
        """Creates an index; ALREADY_EXISTS when it exists."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO indices (name, settings) VALUES (?, ?)",
                    (name, json.dumps(settings)),
                )
            except sqlite3.IntegrityError as exc:
                raise LucidError(
                    ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"search index {name} exists"
                ) from exc

    def settings(self, name: str) -> dict[str, Any]:
        """An index's settings; NOT_FOUND when absent."""
        with self._lock:
            row = self._db.execute(
                "SELECT settings FROM indices WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, f"search index {name} not found")
        return dict(json.loads(row[0]))

    def update_settings(self, name: str, settings: dict[str, Any]) -> None:
        """Replaces an index's settings."""
        with self._lock:
            self._db.execute(
                "UPDATE indices SET settings = ? WHERE name = ?", (json.dumps(settings), name)
            )

    def names(self) -> list[str]:
        """Every index, by name."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM indices ORDER BY name")]

    def delete(self, name: str) -> None:
        """Deletes an index and its documents."""
        self.settings(name)
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM texts WHERE index_name = ?", (name,))
            self._db.execute("DELETE FROM docs WHERE index_name = ?", (name,))
            self._db.execute("DELETE FROM indices WHERE name = ?", (name,))
            self._db.execute("COMMIT")

    def put(self, name: str, documents: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Adds or replaces documents (id, JSON source) in one transaction."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for doc_id, source in documents:
                    self._db.execute(
                        "DELETE FROM texts WHERE index_name = ? AND doc_id = ?", (name, doc_id)
                    )
                    self._db.execute(
                        "INSERT INTO docs (index_name, doc_id, source, indexed_at) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (index_name, doc_id) DO UPDATE SET "
                        "source = excluded.source, indexed_at = excluded.indexed_at",
                        (name, doc_id, json.dumps(source), now),
                    )
                    self._db.executemany(
                        "INSERT INTO texts (index_name, doc_id, field, body) VALUES (?, ?, ?, ?)",
                        [(name, doc_id, f, body) for f, body in _texts(source)],
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def clear(self, name: str) -> None:
        """Removes every document of an index (before a reindex)."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM texts WHERE index_name = ?", (name,))
            self._db.execute("DELETE FROM docs WHERE index_name = ?", (name,))
            self._db.execute("COMMIT")

    def expire(self, name: str, older_than: float) -> int:
        """Removes documents indexed before ``older_than`` (epoch seconds)."""
        with self._lock:
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT doc_id FROM docs WHERE index_name = ? AND indexed_at < ?",
                    (name, older_than),
                )
            ]
            for doc_id in ids:
                self._db.execute(
                    "DELETE FROM texts WHERE index_name = ? AND doc_id = ?", (name, doc_id)
                )
                self._db.execute(
                    "DELETE FROM docs WHERE index_name = ? AND doc_id = ?", (name, doc_id)
                )
        return len(ids)

    def counts(self, name: str) -> tuple[int, int]:
        """Documents of an index and the bytes of their sources."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(source)), 0) FROM docs WHERE index_name = ?",
                (name,),
            ).fetchone()
        return int(row[0]), int(row[1])

    def search(
        self,
        indices: Sequence[str],
        query: Mapping[str, Any],
        *,
        offset: int,
        size: int,
        sort: Sequence[tuple[str, bool]],
    ) -> tuple[int, list[tuple[str, str, dict[str, Any]]]]:
        """The total of matches and one window of (index, id, source)."""
        for name in indices:
            self.settings(name)
        compiled = compile_query(query)
        where = f"d.index_name IN ({', '.join('?' for _ in indices)}) AND ({compiled.sql})"
        params = [*indices, *compiled.params]
        order = ", ".join(
            f"json_extract(d.source, '$.{_field(f)}') {'DESC' if desc else 'ASC'}"
            for f, desc in sort
        )
        started = time.perf_counter()
        with self._lock:
            # the SQL holds fixed fragments and checked field names; values are bound
            total = self._db.execute(f"SELECT COUNT(*) FROM docs d WHERE {where}", params)  # noqa: S608
            count = int(total.fetchone()[0])
            rows = self._db.execute(
                f"SELECT d.index_name, d.doc_id, d.source FROM docs d WHERE {where} "  # noqa: S608
                f"ORDER BY {order + ', ' if order else ''}d.seq LIMIT ? OFFSET ?",
                [*params, size, offset],
            ).fetchall()
        elapsed = time.perf_counter() - started
        for name in indices:
            stats = self.stats.setdefault(name, QueryStats())
            stats.queries += 1
            stats.total_s += elapsed
        return count, [(r[0], r[1], json.loads(r[2])) for r in rows]
