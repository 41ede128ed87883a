"""Chunk ingest: one chunk at a time (UploadChunk) or cut from a byte stream (UploadChunks).

Each chunk is compressed, sealed, hashed and written to the blob store (durable)
and then its row is inserted (durable); only then is it acknowledged. The work on
the bytes runs in threads (compression and sealing in one, the SHA-256 of the raw
bytes in another: both release the GIL), never on the event loop. The rules, all
checked before anything is written:

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
import dataclasses
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
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
class Pieces:
    """A chunk's raw bytes as the pieces they arrived in (an upload stream's messages):
    hashed piece by piece and joined (the one copy sealing needs) in a thread, not on
    the event loop."""

    parts: tuple[bytes, ...]

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)


def pieces_of(data: bytes | Pieces) -> tuple[bytes, ...]:
    """The pieces of a chunk's raw bytes (one when they came whole)."""
    return data.parts if isinstance(data, Pieces) else (data,)


def joined(data: bytes | Pieces) -> bytes:
    """A chunk's raw bytes in one object (a copy when they came in pieces)."""
    parts = pieces_of(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


@dataclass(frozen=True)
class ChunkInput:
    """One chunk as a client hands it in."""

    sequence_number: int
    data: bytes | Pieces
    frame_count: int = 0
    duration_s: float = 0.0
    capture_time: datetime | None = None
    checksum: str = ""
    """The hex SHA-256 of ``data`` when already computed (and checked); else computed."""


@dataclass(frozen=True)
class Sealing:
    """What a session's chunks are sealed with: the chunk master key and the zstd level."""

    master: bytes
    key_id: str
    level: int


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
    """Stores chunks: the checks, the sealing and the writes each chunk goes through."""

    def __init__(self, repo: Repository, store: BlobStore, keys: KeyStore, clock: Clock) -> None:
        self.repo = repo
        self.store = store
        self.keys = keys
        self.clock = clock

    async def admissible(self, session_id: str, session: Doc | None = None) -> Doc:
        """The session, if chunks may be stored in it now (recording or paused, its
        pipeline not paused); raises otherwise. ``session``: its document when the
        caller has just read it (then only the pipeline is read)."""
        if session is None:
            session, pipeline = await both(
                self.repo.session(session_id), self.repo.pipeline(session_id)
            )
        else:
            pipeline = await self.repo.pipeline(session_id)
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

    async def sealing(self, session: Doc) -> Sealing:
        """The key and compression level new chunks of ``session`` are sealed with."""
        master = await self.keys.master_key()
        level = int((session.get("recording") or {}).get("compression_level") or 0)
        return Sealing(master.secret, master.key_id, level or blobformat.DEFAULT_ZSTD_LEVEL)

    @staticmethod
    def check_size(session: Doc, durable_bytes: int, size: int) -> None:
        """Raises 4005 when ``size`` more raw bytes would pass the session's size limit."""
        limit = min(
            int((session.get("storage") or {}).get("max_size_bytes") or DEFAULT_MAX_SIZE_BYTES),
            SESSION_SIZE_CAP,
        )
        if durable_bytes + size > limit:
            raise LucidError(
                ErrorCode.ERROR_CODE_SESSION_FULL,
                f"the session may store at most {limit} bytes",
                metadata={"max_size_bytes": str(limit)},
            )

    async def seal(self, session_id: str, chunk: ChunkInput, sealing: Sealing) -> Sealed:
        """Compresses, encrypts and hashes a chunk in threads: the blob in one, the SHA-256
        of the raw bytes (unless the chunk brings it, checked) in another at the same time."""
        started = time.perf_counter()
        key = blobformat.session_key(sealing.master, session_id)

        def seal() -> blobformat.SealedChunk:
            return blobformat.seal_blob(
                joined(chunk.data),
                session_id=session_id,
                sequence_number=chunk.sequence_number,
                key=key,
                key_id=sealing.key_id,
                level=sealing.level,
            )

        if chunk.checksum:
            sealed, checksum = await asyncio.to_thread(seal), chunk.checksum
        else:
            sealed, checksum = await both(
                asyncio.to_thread(seal),
                asyncio.to_thread(blobformat.checksum_of, *pieces_of(chunk.data)),
            )
        return Sealed(dataclasses.replace(sealed, checksum=checksum), time.perf_counter() - started)

    async def write(self, sealed: Sealed) -> None:
        """Writes the blob durably (fsync and rename, in a thread)."""
        started = time.perf_counter()
        await asyncio.to_thread(self.store.put, sealed.chunk.blob, sealed.chunk.blob_sha256)
        sealed.elapsed_s += time.perf_counter() - started

    async def discard(self, sealed: Sealed) -> None:
        """Removes a written blob whose row will not be inserted."""
        await asyncio.to_thread(self.store.delete, sealed.chunk.blob_sha256)

    def row(
        self, session_id: str, chunk: ChunkInput, sealed: Sealed, sealing: Sealing, last: Doc | None
    ) -> Doc:
        """The row of a sealed chunk that follows the row ``last``."""
        blob = sealed.chunk
        now = self.clock.now()
        return {
            "_id": new_id(),
            "session_id": session_id,
            "sequence_number": chunk.sequence_number,
            "capture_time": chunk.capture_time or now,
            "size_bytes": blob.raw_size,
            "compressed_bytes": blob.compressed_size,
            "stored_bytes": len(blob.blob),
            "duration_s": chunk.duration_s,
            "frame_count": chunk.frame_count,
            "merkle_hash": blob.blob_sha256,
            "checksum": blob.checksum,
            "key_id": sealing.key_id,
            "compression_level": sealing.level,
            "storage_path": self.store.relative_path(blob.blob_sha256),
            "state": "stored",
            "created_at": now,
            **_running_totals(last, row_sizes(blob, chunk)),
        }

    async def insert(self, row: Doc, sealed: Sealed) -> tuple[Doc, bool]:
        """Inserts a chunk's row; when another upload stored its sequence number first,
        removes this blob and returns that row if it holds the same bytes (False: not new),
        else raises 4201."""
        try:
            await self.repo.insert_chunk(row)
        except DuplicateKeyError:
            await self.discard(sealed)
            other = await self.repo.chunk_at(row["session_id"], row["sequence_number"])
            if other is None:
                raise
            return self._resent(other, sealed.chunk.checksum), False
        return row, True

    async def count(self, stored: Sequence[tuple[Doc, Sealed]]) -> None:
        """Raises the session's statistics to the last of some stored rows and counts them
        in the pipeline's stages (two writes for any number of chunks)."""
        last = max((row for row, _ in stored), key=lambda row: int(row["sequence_number"]))
        increments: dict[str, float] = {}
        for _, sealed in stored:
            blob = sealed.chunk
            for name, value in (
                ("stages.chunk_generation.processed_count", 1),
                ("stages.chunk_generation.bytes_in", blob.raw_size),
                ("stages.compression.processed_count", 1),
                ("stages.compression.bytes_in", blob.raw_size),
                ("stages.compression.bytes_out", blob.compressed_size),
                ("stages.encryption.processed_count", 1),
                ("stages.encryption.bytes_in", blob.compressed_size),
                ("stages.encryption.bytes_out", len(blob.blob)),
                ("stages.storage.processed_count", 1),
                ("stages.storage.bytes_in", len(blob.blob)),
                ("stages.storage.bytes_out", len(blob.blob)),
                ("stages.storage.latency_total_s", sealed.elapsed_s),
            ):
                increments[name] = increments.get(name, 0) + value
        await both(
            self.repo.raise_statistics(last["session_id"], statistics_of(last)),
            self.repo.count_stage(last["session_id"], increments),
        )

    async def store_chunk(
        self, session_id: str, chunk: ChunkInput, session: Doc | None = None
    ) -> Stored:
        """Stores one chunk under the sequence number it names (``session``: its document
        when the caller has just read it); returns its row, whether it is new (False: a
        re-send of a stored one) and the last durable row after it."""
        check_length(chunk.data)
        admitted, last = await both(
            self.admissible(session_id, session), self.repo.last_chunk(session_id)
        )
        seq = chunk.sequence_number
        status = upload_status(last)
        if 0 < seq <= status["last_sequence"]:
            existing = last if seq == status["last_sequence"] else None
            existing = existing or await self.repo.chunk_at(session_id, seq)
            if existing is not None:
                return Stored(self._resent(existing, await self._checksum(chunk)), False, last)
        expected = status["last_sequence"] + 1
        if seq != expected:
            raise LucidError(
                ErrorCode.ERROR_CODE_CHUNK_SEQUENCE_GAP,
                f"sequence number {seq} does not follow the last stored chunk; expected {expected}",
                metadata={"expected_sequence": str(expected)},
            )
        self.check_size(admitted, status["durable_bytes"], len(chunk.data))
        sealing = await self.sealing(admitted)
        sealed = await self.seal(session_id, chunk, sealing)
        await self.write(sealed)
        row, new = await self.insert(self.row(session_id, chunk, sealed, sealing, last), sealed)
        if new:
            await self.count([(row, sealed)])
        return Stored(row, new, row)

    @staticmethod
    async def _checksum(chunk: ChunkInput) -> str:
        if chunk.checksum:
            return chunk.checksum
        return await asyncio.to_thread(blobformat.checksum_of, *pieces_of(chunk.data))

    def _resent(self, existing: Doc, checksum: str) -> Doc:
        if existing["checksum"] != checksum:
            raise LucidError(
                ErrorCode.ERROR_CODE_CHUNK_CONFLICT,
                f"sequence number {existing['sequence_number']} already holds a different chunk",
                metadata={"sequence_number": str(existing["sequence_number"])},
            )
        return existing

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


@dataclass(frozen=True)
class Stored:
    """What storing one chunk did: its row, whether it is new, the last durable row after it."""

    row: Doc
    new: bool
    last: Doc | None


@dataclass(eq=False)
class Sealed:
    """A sealed chunk and the time its sealing and writing took (the storage latency)."""

    chunk: blobformat.SealedChunk
    elapsed_s: float


def check_length(data: bytes | Pieces) -> None:
    """Raises unless a chunk holds 1 byte to 10 MiB."""
    if len(data) > MAX_CHUNK_BYTES:
        raise LucidError(
            ErrorCode.ERROR_CODE_CHUNK_TOO_LARGE,
            f"a chunk holds at most {MAX_CHUNK_BYTES} bytes, got {len(data)}",
        )
    if not data:
        raise LucidError(ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "a chunk holds at least 1 byte")


class _PrecedingChunkError(Exception):
    """A chunk before this one in the stream was not stored, so this one is not either."""


@dataclass(eq=False)
class _Flight:
    """One cut chunk being stored; ``settled`` is set once its row is durable (``row``)
    or it failed."""

    settled: asyncio.Event = field(default_factory=asyncio.Event)
    row: Doc | None = None
    task: asyncio.Task[Doc] | None = None

    async def durable_row(self) -> Doc:
        """The chunk's row once it is durable; raises ``_PrecedingChunkError`` if it failed."""
        await self.settled.wait()
        if self.row is None:
            raise _PrecedingChunkError
        return self.row


@dataclass(eq=False)
class UploadStream:
    """The server side of one UploadChunks stream: buffers bytes and cuts 10 MiB chunks.

    The stream numbers its chunks itself from the last durable row (read once, when it
    opens) and keeps the running totals, so cutting a chunk waits for nothing stored.
    Each cut chunk is stored in the background while the next bytes arrive, up to
    ``IN_FLIGHT`` at once: it is sealed (in threads) while the session is checked, its
    blob written, and its row inserted once the row before it is durable — rows go in
    strictly in order, and a chunk whose predecessor failed removes its blob and is not
    inserted. The session's statistics and the pipeline's counters of the chunks inserted
    while the last ones were written go in one write. A failure surfaces at the next cut
    or flush; a flush returns only once everything cut is durable and counted.
    """

    IN_FLIGHT = 3

    session_id: str
    ingest: ChunkIngest
    frame_interval_s: float
    sealing: Sealing
    last: Doc | None
    """The last durable row of the session as this stream knows it."""
    parts: list[bytes] = field(default_factory=list)
    buffered: int = 0
    pending_frames: int = 0
    capture_time: datetime | None = None
    received: int = 0
    stored: int = 0
    closed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    flights: list[_Flight] = field(default_factory=list)
    next_sequence: int = 0
    """The sequence number of the next cut (0: from ``last``)."""
    cut_bytes: int = 0
    """The session's raw bytes up to the next cut: the durable ones and those in flight."""
    uncounted: list[tuple[Doc, Sealed]] = field(default_factory=list)
    """Stored chunks not yet in the session's statistics and the pipeline's counters."""
    counting: asyncio.Lock = field(default_factory=asyncio.Lock)

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
            self.parts.append(data)
            self.buffered += len(data)
            self.received += len(data)
            self.pending_frames += frames
            while self.buffered >= MAX_CHUNK_BYTES:
                await self._cut(MAX_CHUNK_BYTES)

    def status(self) -> dict[str, int]:
        """The durable state of the upload as this stream knows it (after a flush: all of it)."""
        return upload_status(self.last)

    async def flush(self, close: bool = False) -> None:
        """Stores the partial remainder as a shorter chunk, waits until everything cut is
        durable (and with ``close`` stops accepting bytes)."""
        async with self.lock:
            try:
                if self.buffered:
                    await self._cut(self.buffered)
                await self._settle(len(self.flights))
            finally:
                if close:
                    self.closed = True

    async def abandon(self) -> None:
        """Waits for the chunks in flight (the stream broke); their outcome is kept in storage."""
        flights, self.flights = self.flights, []
        await asyncio.gather(*(f.task for f in flights if f.task), return_exceptions=True)

    async def _settle(self, count: int) -> None:
        """Waits for the ``count`` oldest chunks in flight; raises the first failure (then
        after every chunk in flight has ended, and the next cut follows the last durable row)."""
        while count > 0 and self.flights:
            flight = self.flights[0]
            assert flight.task is not None
            try:
                await flight.task
            except BaseException:
                await self.abandon()
                self.next_sequence = 0
                raise
            self.flights.pop(0)
            count -= 1

    def _take(self, size: int) -> Pieces:
        """The first ``size`` buffered bytes, removed from the buffer (only a piece cut in
        two is copied)."""
        taken: list[bytes] = []
        need = size
        while need:
            part = self.parts[0]
            if len(part) <= need:
                taken.append(self.parts.pop(0))
                need -= len(part)
            else:
                with memoryview(part) as view:
                    taken.append(bytes(view[:need]))
                    self.parts[0] = bytes(view[need:])
                need = 0
        self.buffered -= size
        return Pieces(tuple(taken))

    async def _cut(self, size: int) -> None:
        # The oldest chunks first, when they are done or too many are in flight.
        done = 0
        while done < len(self.flights) and _done(self.flights[done].task):
            done += 1
        await self._settle(max(done, len(self.flights) - self.IN_FLIGHT + 1))
        if not self.next_sequence:
            status = upload_status(self.last)
            self.next_sequence = status["last_sequence"] + 1
            self.cut_bytes = status["durable_bytes"]
        frames = self.pending_frames * size // self.buffered
        chunk = ChunkInput(
            sequence_number=self.next_sequence,
            data=self._take(size),
            frame_count=frames,
            duration_s=frames * self.frame_interval_s,
            capture_time=self.capture_time,
        )
        before = self.flights[-1] if self.flights else None
        flight = _Flight()
        flight.task = asyncio.create_task(self._store(chunk, flight, before, self.cut_bytes))
        self.flights.append(flight)
        self.next_sequence += 1
        self.cut_bytes += size
        self.pending_frames -= frames
        self.capture_time = None

    async def _store(
        self, chunk: ChunkInput, flight: _Flight, before: _Flight | None, durable_bytes: int
    ) -> Doc:
        ingest = self.ingest
        try:
            session, sealed = await both(
                ingest.admissible(self.session_id),
                ingest.seal(self.session_id, chunk, self.sealing),
            )
            ingest.check_size(session, durable_bytes, len(chunk.data))
            await ingest.write(sealed)
            try:
                last = self.last if before is None else await before.durable_row()
            except BaseException:
                await ingest.discard(sealed)
                raise
            row, new = await ingest.insert(
                ingest.row(self.session_id, chunk, sealed, self.sealing, last), sealed
            )
            flight.row = row
            self.last = row
            self.stored += 1
        finally:
            flight.settled.set()
        if new:
            # The counters of the chunks inserted meanwhile go in one write: this chunk's
            # task ends once its own are written (by it or by the one before it).
            self.uncounted.append((row, sealed))
            async with self.counting:
                batch, self.uncounted = self.uncounted, []
                if batch:
                    await ingest.count(batch)
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
        return sum(s.buffered for s in self._streams.get(session_id, ()))

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


def _done(task: asyncio.Task[Doc] | None) -> bool:
    return task is not None and task.done()


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Two awaitables at once (two store calls: one round trip of latency; two threads:
    both cores); the first failure is raised once both have finished, so neither is
    left running."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]  # type: ignore[return-value]
