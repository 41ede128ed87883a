"""The tamper-evident audit log: append, query, stats, export, verify, retention.

Each entry's hash is SHA-256(previous entry's hash ‖ canonical JSON of the entry
without its own hash); the first entry chains to ``GENESIS``. ``verify`` walks the
chain in ``seq`` order and names the first entry that is edited (its hash does not
match its content), follows a deleted one (a gap in ``seq`` or a ``prev_hash`` that
is not its predecessor's) or was moved (its ``seq`` is part of what is hashed).
Retention removes the oldest entries and keeps the last removed entry's hash as a
checkpoint, so the remaining chain still verifies from its start.

What is hashed is what the store gives back: the time is cut to milliseconds and the
details are put in their stored form first (``stored_details``): the store keeps no
negative zero and no NaN or infinity, reads a whole float as the float it was and refuses
keys with ``.`` or a leading ``$``, and the other clusters' events (admin's intake) carry
their numbers as JSON floats.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from lucid.admin.store.auditchain import (
    AuditChainStore,
    AuditFilter,
    AuditRecord,
    ChainConflictError,
)
from lucid.admin.store.state import Checkpoint, StateStore
from lucid.lib.canonical import canonical_json
from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.audit import Client
from lucid.runtime.errors import ErrorCode, FieldViolation, LucidError

GENESIS = "0" * 64
MAX_WHOLE_FLOAT = 2**53
"""Whole floats up to this magnitude are kept as integers (every such float is one)."""
MAX_STORED_INT = 2**63 - 1
MAX_RANGE = timedelta(days=365)
MAX_EXPORT = 10_000
APPEND_ATTEMPTS = 20
CSV_COLUMNS = (
    "seq",
    "entry_id",
    "event_time",
    "user_id",
    "username",
    "action",
    "resource",
    "resource_id",
    "severity",
    "risk_level",
    "result",
    "ip_address",
    "user_agent",
    "request_id",
    "step_up_id",
    "details",
    "prev_hash",
    "entry_hash",
)


@dataclass(frozen=True)
class NewEntry:
    """What a caller records; the log adds id, time, position and hashes."""

    action: str
    resource: str
    user_id: str = ""
    username: str = ""
    resource_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    ip_address: str = ""
    user_agent: str = ""
    severity: str = "info"
    risk_level: str = "low"
    result: str = "success"
    step_up_id: str = ""
    request_id: str = ""

    @classmethod
    def of(cls, client: Client | None, **fields: Any) -> NewEntry:
        """An entry by ``client``'s user, from its address (None: by the system itself)."""
        if client is not None:
            fields = {
                "user_id": client.user_id,
                "ip_address": client.ip,
                "user_agent": client.user_agent,
                "request_id": client.request_id,
                **fields,
            }
        return cls(**fields)


@dataclass(frozen=True)
class Verification:
    """The outcome of a chain check."""

    valid: bool
    checked: int
    first_invalid_entry_id: str = ""
    message: str = ""


@dataclass(frozen=True)
class Export:
    """An export file."""

    content: bytes
    content_type: str
    file_name: str
    count: int
    sha256: str


def entry_hash(record: AuditRecord) -> str:
    """SHA-256(prev_hash ‖ canonical JSON of the record without ``entry_hash``)."""
    body = asdict(record)
    body.pop("entry_hash")
    body["event_time"] = record.event_time.isoformat()
    return hashlib.sha256(record.prev_hash.encode() + canonical_json(body)).hexdigest()


def stored_details(value: Any) -> Any:
    """Details as the store will give them back, so that their hash still matches when
    read: a whole number (``5000000.0`` from an event's JSON, ``-0.0``) as an integer; a
    NaN, an infinity, an integer beyond 64 bits or another value that is not JSON data
    as its text; keys as strings, a ``.`` in one as ``_`` and a leading ``$`` as ``_``."""
    if isinstance(value, dict):
        return {_stored_key(str(k)): stored_details(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [stored_details(v) for v in value]
    if isinstance(value, float):
        return _stored_number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) <= MAX_STORED_INT else str(value)
    return value if value is None or isinstance(value, (bool, str)) else str(value)


def _stored_number(value: float) -> int | float | str:
    if not math.isfinite(value):
        return str(value)
    if value.is_integer() and abs(value) <= MAX_WHOLE_FLOAT:
        return int(value)
    return value


def _stored_key(key: str) -> str:
    key = key.replace(".", "_")
    return "_" + key[1:] if key.startswith("$") else key


def _millis(moment: datetime) -> datetime:
    """MongoDB keeps milliseconds: hash what will be read back."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def check_range(start: datetime | None, end: datetime | None) -> None:
    """Refuses an inverted range or one longer than 365 days."""
    if start is not None and end is not None:
        if end < start:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT,
                "end_time is before start_time",
                field_violations=[FieldViolation("end_time", "before start_time")],
            )
        if end - start > MAX_RANGE:
            raise LucidError(
                ErrorCode.ERROR_CODE_OUT_OF_RANGE,
                "the date range may span at most 365 days",
                field_violations=[FieldViolation("start_time", "range longer than 365 days")],
            )


class AuditLog:
    """The admin audit chain."""

    def __init__(self, store: AuditChainStore, state: StateStore, clock: Clock) -> None:
        self.store = store
        self.state = state
        self.clock = clock
        self._lock = asyncio.Lock()

    async def record(self, entry: NewEntry) -> AuditRecord:
        """Appends an entry at the head of the chain (persisted before it returns)."""
        async with self._lock:
            for _ in range(APPEND_ATTEMPTS):
                head = await self.store.head()
                if head is None:
                    checkpoint = await self.state.checkpoint()
                    seq, prev = (
                        (checkpoint.seq + 1, checkpoint.entry_hash) if checkpoint else (0, GENESIS)
                    )
                else:
                    seq, prev = head.seq + 1, head.entry_hash
                draft = AuditRecord(
                    entry_id=new_id(),
                    seq=seq,
                    event_time=_millis(self.clock.now()),
                    prev_hash=prev,
                    entry_hash="",
                    **{**asdict(entry), "details": stored_details(entry.details)},
                )
                record = replace(draft, entry_hash=entry_hash(draft))
                try:
                    await self.store.append(record)
                except ChainConflictError:
                    continue  # another admin instance appended first: chain onto it
                return record
        raise LucidError(
            ErrorCode.ERROR_CODE_INCONSISTENT_STATE, "the audit chain head is contended"
        )

    async def query(
        self, where: AuditFilter, offset: int, size: int
    ) -> tuple[list[AuditRecord], int]:
        """A page of matching entries (newest first) and how many match."""
        check_range(where.start, where.end)
        return await self.store.find(where, offset, size), await self.store.count(where)

    async def stats(self, where: AuditFilter) -> dict[str, Any]:
        """Counts by action, resource, severity, result and the ten busiest users."""
        check_range(where.start, where.end)
        counters: dict[str, Counter[str]] = {
            k: Counter() for k in ("action", "resource", "severity", "result", "user_id")
        }
        total = 0
        async for record in self.store.in_order(where):
            total += 1
            for name, counter in counters.items():
                counter[getattr(record, name) or "-"] += 1
        return {
            "total": total,
            "by_action": dict(counters["action"]),
            "by_resource": dict(counters["resource"]),
            "by_severity": dict(counters["severity"]),
            "by_result": dict(counters["result"]),
            "top_users": dict(counters["user_id"].most_common(10)),
        }

    async def export(self, where: AuditFilter, fmt: str) -> Export:
        """The matching entries (oldest first) as JSON lines or CSV."""
        check_range(where.start, where.end)
        if await self.store.count(where) > MAX_EXPORT:
            raise LucidError(
                ErrorCode.ERROR_CODE_OUT_OF_RANGE,
                f"an export holds at most {MAX_EXPORT} entries; narrow the filter",
            )
        rows = [_plain(r) async for r in self.store.in_order(where)]
        if fmt == "json":
            content = b"".join(canonical_json(row) + b"\n" for row in rows)
            content_type, suffix = "application/x-ndjson", "jsonl"
        elif fmt == "csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "details": json.dumps(row["details"], sort_keys=True)})
            content = buffer.getvalue().encode()
            content_type, suffix = "text/csv", "csv"
        else:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ENUM,
                f"export format {fmt} is not supported",
                field_violations=[FieldViolation("format", "JSON or CSV")],
            )
        stamp = self.clock.now().strftime("%Y%m%dT%H%M%SZ")
        return Export(
            content,
            content_type,
            f"lucid-audit-{stamp}.{suffix}",
            len(rows),
            hashlib.sha256(content).hexdigest(),
        )

    async def verify(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> Verification:
        """Walks the chain (or the part in a time range) and names the first bad entry."""
        check_range(start, end)
        expected_prev: str | None = None
        expected_seq: int | None = None
        checked = 0
        async for record in self.store.in_order(AuditFilter(start=start, end=end)):
            if expected_seq is None:
                expected_seq, expected_prev = await self._start_of(record)
            if record.seq != expected_seq:
                return Verification(
                    False,
                    checked,
                    record.entry_id,
                    f"entries {expected_seq}..{record.seq - 1} are missing before entry "
                    f"{record.entry_id} (seq {record.seq}): deleted",
                )
            if record.prev_hash != expected_prev:
                return Verification(
                    False,
                    checked,
                    record.entry_id,
                    f"entry {record.entry_id} (seq {record.seq}) does not chain to its "
                    "predecessor: an entry was deleted, replaced or moved",
                )
            if entry_hash(record) != record.entry_hash:
                return Verification(
                    False,
                    checked,
                    record.entry_id,
                    f"entry {record.entry_id} (seq {record.seq}) was edited: "
                    "its content does not match its hash",
                )
            checked += 1
            expected_seq, expected_prev = record.seq + 1, record.entry_hash
        return Verification(True, checked, "", f"{checked} entries verified")

    async def _start_of(self, first: AuditRecord) -> tuple[int, str]:
        """The seq and prev_hash the first entry checked must have."""
        if first.seq > 0:
            before = await self.store.at(first.seq - 1)
            if before is not None:
                return before.seq + 1, before.entry_hash
        checkpoint = await self.state.checkpoint()
        if checkpoint is not None:
            return checkpoint.seq + 1, checkpoint.entry_hash
        return 0, GENESIS

    async def purge(self, retention: timedelta) -> int:
        """Removes entries older than ``retention``, moving the checkpoint first."""
        cutoff = self.clock.now() - retention
        last: AuditRecord | None = None
        async for record in self.store.in_order(AuditFilter(end=cutoff)):
            last = record
        if last is None:
            return 0
        await self.state.set_checkpoint(Checkpoint(last.seq, last.entry_hash))
        return await self.store.purge_through(last.seq)


def _plain(record: AuditRecord) -> dict[str, Any]:
    row = asdict(record)
    row["event_time"] = record.event_time.isoformat()
    return row
