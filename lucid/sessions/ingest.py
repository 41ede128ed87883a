"""Chunk ingest: one chunk at a time (UploadChunk) or cut from a byte stream (UploadChunks).

Each chunk is compressed, sealed, hashed and written to the blob store (durable)
and then its row is inserted (durable); only then is it acknowledged. The rules,
all checked before anything is written:

- at most 10 MiB; the session recording or paused and its pipeline not paused;
- the same bytes under an acknowledged sequence number return the stored chunk
  (idempotent); different bytes are refused (``LUCID_ERR_4201``);
- a sequence number must follow the last stored one (``LUCID_ERR_4202``), so the
  stored chunks are always 1…n without gaps;
- the session's raw bytes stay within its ``max_size_bytes`` (``LUCID_ERR_4005``).

Each row carries the running totals up to itself (raw bytes, stored bytes,
frames, time), so the durable state of an upload is the last row alone.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pymongo.errors import DuplicateKeyError

from lucid.lib.clock import Clock
from lucid.lib.ids import new_id
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.sessions import blobformat
from lucid.sessions.blobformat import MAX_CHUNK_BYTES
from lucid.sessions.blobstore import BlobStore
from lucid.sessions.keys import KeyStore
from lucid.sessions.service import (
    DEFAULT_MAX_SIZE_BYTES,
    PIPELINE_PAUSED,
    SESSION_SIZE_CAP,
    invalid_state,
)
from lucid.sessions.states import UPLOADABLE
from lucid.sessions.store.repository import Doc, Repository

log = logging.getLogger("lucid.sessions.ingest")
A = TypeVar("A")
B = TypeVar("B")


@dataclass(frozen=True)
class ChunkInput:
    """One chunk as a client hands it in."""

    sequence_number: int
    data: bytes
    frame_count: int = 0
    duration_s: float = 0.0
    capture_time: datetime | None = None
    checksum: str = ""
    """The hex SHA-256 of ``data`` when already computed (and checked); else computed."""


@dataclass(frozen=True)
class Predecessor:
    """The durable row an upload stream knows its next chunk follows (``None``: none yet),
    so the chunk is stored without reading the last row again. A concurrent writer of
    the same sequence number still loses on the unique index."""

    row: Doc | None


def upload_status(last: Doc | None) -> dict[str, int]:
    """The durable state of an upload from its last chunk row."""
    if last is None:
        return {"last_sequence": 0, "chunk_count": 0, "durable_bytes": 0}
    return {
        "last_sequence": int(last["sequence_number"]),
        "chunk_count": int(last["sequence_number"]),
        "durable_bytes": int(last["totals"]["raw_bytes"]),
    }


def row_sizes(sealed: blobformat.SealedChunk, chunk: ChunkInput) -> dict[str, Any]:
    """What one chunk adds to the running totals."""
    return {
        "raw_bytes": sealed.raw_size,
        "stored_bytes": len(sealed.blob),
        "compressed_bytes": sealed.compressed_size,
        "frames": chunk.frame_count,
        "duration_s": chunk.duration_s,
    }


def _running_totals(last: Doc | None, sizes: dict[str, Any]) -> Doc:
    previous = (last or {}).get("totals") or {}
    return {
        "offset": int(previous.get("raw_bytes", 0)),
        "totals": {
            "raw_bytes": int(previous.get("raw_bytes", 0)) + sizes["raw_bytes"],
            "stored_bytes": int(previous.get("stored_bytes", 0)) + sizes["stored_bytes"],
            "compressed_bytes": int(previous.get("compressed_bytes", 0))
            + sizes["compressed_bytes"],
            "frames": int(previous.get("frames", 0)) + sizes["frames"],
            "duration_s": float(previous.get("duration_s", 0.0)) + sizes["duration_s"],
        },
    }


def statistics_of(last: Doc | None) -> dict[str, Any]:
    """Session counters from the last chunk row (they only grow)."""
    if last is None:
        return {}
    totals = last["totals"]
    return {
        "chunk_count": int(last["sequence_number"]),
        "last_sequence": int(last["sequence_number"]),
        "original_bytes": int(totals["raw_bytes"]),
        "stored_bytes": int(totals["stored_bytes"]),
        "compressed_bytes": int(totals["compressed_bytes"]),
        "frames": int(totals["frames"]),
        "duration_s": float(totals["duration_s"]),
    }


class ChunkIngest:
    """Stores chunks."""

    def __init__(self, repo: Repository, store: BlobStore, keys: KeyStore, clock: Clock) -> None:
        self.repo = repo
        self.store = store
        self.keys = keys
        self.clock = clock

    async def _admissible(self, session_id: str) -> Doc:
        session, pipeline = await _both(
            self.repo.session(session_id), self.repo.pipeline(session_id)
        )
        if session is None:
            raise LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, f"session {session_id} not found")
        if session["state"] not in UPLOADABLE:
            raise invalid_state(session, "upload chunks to")
        if pipeline is not None and pipeline.get("state") == PIPELINE_PAUSED:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                "the session's pipeline is paused; resume it before uploading",
                metadata={"state": "pipeline_paused"},
            )
        return session

    async def last_row(self, session_id: str) -> Doc | None:
        """The row of a session's last durable chunk (``None``: none yet)."""
        return await self.repo.last_chunk(session_id)

    async def store_chunk(
        self,
        session_id: str,
        chunk: ChunkInput,
        predecessor: Predecessor | None = None,
        *,
        after: Awaitable[Doc] | None = None,
        on_sealed: Callable[[Doc], None] | None = None,
    ) -> tuple[Doc, bool]:
        """Stores one chunk; returns its row and whether it is new (False: a re-send).

        ``predecessor``: the last row as the caller (an upload stream) knows it; without
        it the last row is read, together with the session. ``after``: the storing of
        that row, still under way: this chunk is checked, sealed and written meanwhile,
        its row is inserted only once that one is durable (its blob is removed if that
        one fails). ``on_sealed`` hears the row before it is inserted."""
        if len(chunk.data) > MAX_CHUNK_BYTES:
            raise LucidError(
                ErrorCode.ERROR_CODE_CHUNK_TOO_LARGE,
                f"a chunk holds at most {MAX_CHUNK_BYTES} bytes, got {len(chunk.data)}",
            )
        if not chunk.data:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "a chunk holds at least 1 byte")
        if predecessor is None:
            session, last = await _both(
                self._admissible(session_id), self.repo.last_chunk(session_id)
            )
        else:
            session, last = await self._admissible(session_id), predecessor.row
        seq = chunk.sequence_number
        status = upload_status(last)
        if 0 < seq <= status["last_sequence"]:
            existing = last if seq == status["last_sequence"] else None
            existing = existing or await self.repo.chunk_at(session_id, seq)
            if existing is not None:
                return self._resent(existing, await self._checksum(chunk)), False
        expected = status["last_sequence"] + 1
        if seq != expected:
            raise LucidError(
                ErrorCode.ERROR_CODE_CHUNK_SEQUENCE_GAP,
                f"sequence number {seq} does not follow the last stored chunk; expected {expected}",
                metadata={"expected_sequence": str(expected)},
            )
        limit = min(
            int((session.get("storage") or {}).get("max_size_bytes") or DEFAULT_MAX_SIZE_BYTES),
            SESSION_SIZE_CAP,
        )
        if status["durable_bytes"] + len(chunk.data) > limit:
            raise LucidError(
                ErrorCode.ERROR_CODE_SESSION_FULL,
                f"the session may store at most {limit} bytes",
                metadata={"max_size_bytes": str(limit)},
            )
        master = await self.keys.master_key()
        level = int((session.get("recording") or {}).get("compression_level") or 0) or (
            blobformat.DEFAULT_ZSTD_LEVEL
        )
        started = time.perf_counter()
        sealed = await asyncio.to_thread(
            functools.partial(
                self._seal_and_write,
                chunk.data,
                session_id=session_id,
                seq=seq,
                master=master.secret,
                key_id=master.key_id,
                level=level,
                checksum=chunk.checksum,
            )
        )
        elapsed = time.perf_counter() - started
        now = self.clock.now()
        row: Doc = {
            "_id": new_id(),
            "session_id": session_id,
            "sequence_number": seq,
            "capture_time": chunk.capture_time or now,
            "size_bytes": sealed.raw_size,
            "compressed_bytes": sealed.compressed_size,
            "stored_bytes": len(sealed.blob),
            "duration_s": chunk.duration_s,
            "frame_count": chunk.frame_count,
            "merkle_hash": sealed.blob_sha256,
            "checksum": sealed.checksum,
            "key_id": master.key_id,
            "compression_level": level,
            "storage_path": self.store.relative_path(sealed.blob_sha256),
            "state": "stored",
            "created_at": now,
            **_running_totals(last, row_sizes(sealed, chunk)),
        }
        if on_sealed is not None:
            on_sealed(row)
        if after is not None:
            await self._follow(after, last, row, sealed, chunk)
        try:
            await self.repo.insert_chunk(row)
        except DuplicateKeyError:
            # Another upload stored this sequence number first; our blob is an orphan.
            await asyncio.to_thread(self.store.delete, sealed.blob_sha256)
            other = await self.repo.chunk_at(session_id, seq)
            if other is None:
                raise
            return self._resent(other, sealed.checksum), False
        await _both(
            self.repo.raise_statistics(session_id, statistics_of(row)),
            self.repo.count_stage(
                session_id,
                {
                    "stages.chunk_generation.processed_count": 1,
                    "stages.chunk_generation.bytes_in": sealed.raw_size,
                    "stages.compression.processed_count": 1,
                    "stages.compression.bytes_in": sealed.raw_size,
                    "stages.compression.bytes_out": sealed.compressed_size,
                    "stages.encryption.processed_count": 1,
                    "stages.encryption.bytes_in": sealed.compressed_size,
                    "stages.encryption.bytes_out": len(sealed.blob),
                    "stages.storage.processed_count": 1,
                    "stages.storage.bytes_in": len(sealed.blob),
                    "stages.storage.bytes_out": len(sealed.blob),
                    "stages.storage.latency_total_s": elapsed,
                },
            ),
        )
        return row, True

    async def _follow(
        self,
        after: Awaitable[Doc],
        last: Doc | None,
        row: Doc,
        sealed: blobformat.SealedChunk,
        chunk: ChunkInput,
    ) -> None:
        """Waits until the row ``row`` follows is durable (removing this blob if it fails)."""
        try:
            durable = await after
        except BaseException:
            await asyncio.to_thread(self.store.delete, sealed.blob_sha256)
            raise
        if last is None or durable["_id"] != last["_id"]:  # a re-send took its place
            row.update(_running_totals(durable, row_sizes(sealed, chunk)))

    @staticmethod
    async def _checksum(chunk: ChunkInput) -> str:
        if chunk.checksum:
            return chunk.checksum
        return await asyncio.to_thread(lambda: hashlib.sha256(chunk.data).hexdigest())

    def _resent(self, existing: Doc, checksum: str) -> Doc:
        if existing["checksum"] != checksum:
            raise LucidError(
                ErrorCode.ERROR_CODE_CHUNK_CONFLICT,
                f"sequence number {existing['sequence_number']} already holds a different chunk",
                metadata={"sequence_number": str(existing["sequence_number"])},
            )
        return existing

    def _seal_and_write(
        self,
        data: bytes,
        *,
        session_id: str,
        seq: int,
        master: bytes,
        key_id: str,
        level: int,
        checksum: str,
    ) -> blobformat.SealedChunk:
        sealed = blobformat.seal_chunk(
            data,
            session_id=session_id,
            sequence_number=seq,
            key=blobformat.session_key(master, session_id),
            key_id=key_id,
            level=level,
            checksum=checksum or None,
        )
        self.store.put(sealed.blob, sealed.blob_sha256)
        return sealed

    async def read_chunk(self, row: Doc) -> bytes:
        """The raw bytes of a stored chunk, checked against its leaf hash, tag and checksum."""
        key = await self.keys.by_id(row["key_id"])
        return await asyncio.to_thread(self._open, row, key.secret)

    def _open(self, row: Doc, master: bytes) -> bytes:
        blob = self.store.get(row["merkle_hash"])
        data = blobformat.open_chunk(
            blob,
            session_id=row["session_id"],
            sequence_number=int(row["sequence_number"]),
            key=blobformat.session_key(master, row["session_id"]),
        )
        if hashlib.sha256(data).hexdigest() != row["checksum"]:
            raise blobformat.BlobError("the chunk does not match its checksum")
        return data


@dataclass(eq=False)
class _Flight:
    """One cut chunk being stored, and its row as soon as it is sealed."""

    task: asyncio.Task[Doc]
    sealed: asyncio.Future[Doc]


@dataclass(eq=False)
class UploadStream:
    """The server side of one UploadChunks stream: buffers bytes and cuts 10 MiB chunks.

    A cut chunk is stored in the background while the next bytes arrive. Chunks are
    stored in order with at most two in flight: the next one is checked, sealed and
    written while the one before it is inserted, and its own row goes in only once that
    one is durable. A failure surfaces at the next cut or flush, and a flush returns
    only once everything cut is durable.
    """

    session_id: str
    ingest: ChunkIngest
    frame_interval_s: float
    buffer: bytearray = field(default_factory=bytearray)
    pending_frames: int = 0
    capture_time: datetime | None = None
    received: int = 0
    stored: int = 0
    closed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    flights: list[_Flight] = field(default_factory=list)
    last: Predecessor | None = None
    """The last durable row of the session as this stream knows it (read once)."""

    async def feed(self, data: bytes, frames: int, capture_time: datetime | None) -> None:
        """Adds bytes; stores every full 10 MiB chunk they complete."""
        async with self.lock:
            if self.closed:
                raise LucidError(
                    ErrorCode.ERROR_CODE_INVALID_STATE,
                    "the session stopped; no more bytes are accepted",
                    metadata={"state": "stopped"},
                )
            if self.capture_time is None:
                self.capture_time = capture_time
            self.buffer += data
            self.received += len(data)
            self.pending_frames += frames
            while len(self.buffer) >= MAX_CHUNK_BYTES:
                await self._cut(MAX_CHUNK_BYTES)

    async def flush(self, close: bool = False) -> None:
        """Stores the partial remainder as a shorter chunk, waits until everything cut is
        durable (and with ``close`` stops accepting bytes)."""
        async with self.lock:
            try:
                if self.buffer:
                    await self._cut(len(self.buffer))
                await self._settle()
            finally:
                if close:
                    self.closed = True

    async def abandon(self) -> None:
        """Waits for the chunks in flight (the stream broke); their outcome is kept in storage."""
        flights, self.flights = self.flights, []
        await asyncio.gather(*(f.task for f in flights), return_exceptions=True)

    async def _settle(self) -> None:
        flights, self.flights = self.flights, []
        outcomes = await asyncio.gather(*(f.task for f in flights), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _predecessor(self) -> tuple[Predecessor, asyncio.Task[Doc] | None]:
        """The row the next chunk follows, and the storing of it while still under way."""
        while len(self.flights) > 1:  # a third chunk waits until the first is durable
            await self.flights.pop(0).task
        if self.flights:
            flight = self.flights[0]
            await asyncio.wait((flight.task, flight.sealed), return_when=asyncio.FIRST_COMPLETED)
            if not flight.task.done():
                return Predecessor(flight.sealed.result()), flight.task
            self.flights.clear()
            flight.task.result()  # its failure surfaces here
        if self.last is None:
            self.last = Predecessor(await self.ingest.last_row(self.session_id))
        return self.last, None

    async def _cut(self, size: int) -> None:
        with memoryview(self.buffer) as view:
            data = bytes(view[:size])
        frames = self.pending_frames * size // len(self.buffer)
        predecessor, after = await self._predecessor()
        seq = upload_status(predecessor.row)["last_sequence"] + 1
        chunk = ChunkInput(
            sequence_number=seq,
            data=data,
            frame_count=frames,
            duration_s=frames * self.frame_interval_s,
            capture_time=self.capture_time,
        )
        sealed: asyncio.Future[Doc] = asyncio.get_running_loop().create_future()

        def heard(row: Doc) -> None:
            if not sealed.done():
                sealed.set_result(row)

        task = asyncio.create_task(self._store(chunk, predecessor, after, heard))
        self.flights.append(_Flight(task, sealed))
        del self.buffer[:size]
        self.pending_frames -= frames
        self.capture_time = None

    async def _store(
        self,
        chunk: ChunkInput,
        predecessor: Predecessor,
        after: asyncio.Task[Doc] | None,
        heard: Callable[[Doc], None],
    ) -> Doc:
        row, _ = await self.ingest.store_chunk(
            self.session_id, chunk, predecessor, after=after, on_sealed=heard
        )
        self.last = Predecessor(row)
        self.stored += 1
        return row


class OpenStreams:
    """The upload streams open in this process, so a stop or pause can flush them."""

    def __init__(self) -> None:
        self._streams: dict[str, set[UploadStream]] = {}

    def add(self, stream: UploadStream) -> Callable[[], None]:
        """Registers a stream; returns its unregistration."""
        self._streams.setdefault(stream.session_id, set()).add(stream)

        def remove() -> None:
            streams = self._streams.get(stream.session_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    self._streams.pop(stream.session_id, None)

        return remove

    def received(self, session_id: str) -> int:
        """Bytes received but not yet stored by the open streams of a session."""
        return sum(len(s.buffer) for s in self._streams.get(session_id, ()))

    async def flush(self, session_id: str, close: bool) -> None:
        """Flushes (and closes) every open stream of a session."""
        for stream in list(self._streams.get(session_id, ())):
            try:
                await stream.flush(close)
            except LucidError as exc:
                log.warning(
                    "could not flush the open upload of a session",
                    extra={"session_id": session_id, "reason": exc.reason},
                )


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Two store calls at once (one round trip of latency); the first failure is raised
    once both have finished, so neither is left running."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]  # type: ignore[return-value]
