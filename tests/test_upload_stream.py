"""The upload stream's ordering (lucid.sessions.ingest.UploadStream), against a stand-in
for the ingest that records what it is asked: chunks are numbered by the stream and
inserted in order with their running totals, later chunks are sealed while earlier ones
are inserted, never more than ``IN_FLIGHT`` are in flight, receiving goes on while chunks
are sealed, and a failure stops every chunk after it (their blobs removed), surfaces at
the flush, and the next chunk follows the last durable row."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lucid.runtime.errors import ErrorCode, LucidError
from lucid.sessions.blobformat import MAX_CHUNK_BYTES, SealedChunk
from lucid.sessions.ingest import ChunkIngest, ChunkInput, Sealed, Sealing, UploadStream

Doc = dict[str, Any]
SEALING = Sealing(bytes(32), "key", 3)
PIECE = MAX_CHUNK_BYTES // 4


class Ingest:
    """Seals and writes at once (or when ``gate`` opens), inserts slowly; fails the chunk
    ``fail_at`` at ``stage`` (``admit``: the session refuses it, ``insert``: the store)."""

    check_size = staticmethod(ChunkIngest.check_size)

    def __init__(self, fail_at: int = 0, stage: str = "insert") -> None:
        self.fail_at = fail_at
        self.stage = stage
        self.gate: asyncio.Event | None = None
        self.sealed: list[int] = []
        self.inserted: list[Doc] = []
        self.written: set[str] = set()
        self.discarded: list[str] = []
        self.busy = 0
        self.most_busy = 0
        self.inserting = False
        self.sealed_while_inserting = 0
        self.admitted = 0
        self.counts: list[list[int]] = []
        self.count_s = 0.0

    async def admissible(self, session_id: str) -> Doc:
        await asyncio.sleep(0)
        if self.stage == "admit" and self.admitted == self.fail_at - 1:
            raise LucidError(ErrorCode.ERROR_CODE_INVALID_STATE, "pipeline paused")
        self.admitted += 1
        return {"_id": session_id, "state": "recording"}

    async def seal(self, session_id: str, chunk: ChunkInput, sealing: Sealing) -> Sealed:
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.inserting:
            self.sealed_while_inserting += 1
        self.sealed.append(chunk.sequence_number)
        blob = SealedChunk(
            blob=b"sealed",
            blob_sha256=f"blob-{chunk.sequence_number}",
            checksum=f"sum-{chunk.sequence_number}",
            raw_size=len(chunk.data),
            compressed_size=len(chunk.data) // 2,
        )
        return Sealed(blob, 0.0)

    async def write(self, sealed: Sealed) -> None:
        self.written.add(sealed.chunk.blob_sha256)

    async def discard(self, sealed: Sealed) -> None:
        self.written.discard(sealed.chunk.blob_sha256)
        self.discarded.append(sealed.chunk.blob_sha256)

    def row(
        self, session_id: str, chunk: ChunkInput, sealed: Sealed, sealing: Sealing, last: Doc | None
    ) -> Doc:
        raw = (last["totals"]["raw_bytes"] if last else 0) + len(chunk.data)
        return {
            "sequence_number": chunk.sequence_number,
            "merkle_hash": sealed.chunk.blob_sha256,
            "totals": {"raw_bytes": raw},
        }

    async def insert(self, row: Doc, sealed: Sealed) -> tuple[Doc, bool]:
        try:
            if self.inserted:
                assert row["sequence_number"] == self.inserted[-1]["sequence_number"] + 1
            self.inserting = True
            await asyncio.sleep(0.02)
            if self.stage == "insert" and row["sequence_number"] == self.fail_at:
                raise LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, "insert failed")
            self.inserted.append(row)
            return row, True
        finally:
            self.inserting = False
            self.busy -= 1

    async def count(self, stored: list[tuple[Doc, Sealed]]) -> None:
        self.counts.append([row["sequence_number"] for row, _ in stored])
        await asyncio.sleep(self.count_s)


class Tracked(UploadStream):
    """Counts the chunks being stored."""

    running = 0

    async def _store(self, *args: Any) -> Doc:
        self.running += 1
        try:
            return await super()._store(*args)
        finally:
            self.running -= 1


def _stream(ingest: Ingest, last: Doc | None = None) -> Tracked:
    return Tracked("s", ingest, 1 / 30, SEALING, last)  # type: ignore[arg-type]


async def _send(stream: UploadStream, chunks: int) -> None:
    for _ in range(chunks * 4):
        await stream.feed(bytes(PIECE), 1, None)
    await stream.feed(b"tail", 1, None)
    await stream.flush()


async def test_chunks_are_stored_in_order_at_most_in_flight_with_running_totals() -> None:
    ingest = Ingest()
    stream = _stream(ingest)
    await _send(stream, 5)
    assert [r["sequence_number"] for r in ingest.inserted] == [1, 2, 3, 4, 5, 6]
    assert [r["totals"]["raw_bytes"] for r in ingest.inserted] == [
        *(n * MAX_CHUNK_BYTES for n in range(1, 6)),
        5 * MAX_CHUNK_BYTES + 4,
    ]
    assert ingest.most_busy == UploadStream.IN_FLIGHT
    assert ingest.sealed_while_inserting > 0
    assert ingest.written == {f"blob-{n}" for n in range(1, 7)} and not ingest.discarded
    assert [seq for batch in ingest.counts for seq in batch] == [1, 2, 3, 4, 5, 6]
    assert stream.stored == 6 and not stream.flights
    assert stream.status() == {
        "last_sequence": 6,
        "chunk_count": 6,
        "durable_bytes": 5 * MAX_CHUNK_BYTES + 4,
    }


async def test_counters_of_chunks_inserted_meanwhile_go_in_one_write() -> None:
    ingest = Ingest()
    ingest.count_s = 0.1  # slower than inserting: the next chunks' counters wait and merge
    stream = _stream(ingest)
    await _send(stream, 5)
    counted = [seq for batch in ingest.counts for seq in batch]
    assert counted == [1, 2, 3, 4, 5, 6]  # every chunk once, in order, all before the flush
    assert ingest.counts[0] == [1] and len(ingest.counts) < 6


async def test_a_stream_numbers_its_chunks_after_the_last_durable_row() -> None:
    ingest = Ingest()
    last = {"sequence_number": 7, "totals": {"raw_bytes": 70}}
    stream = _stream(ingest, last)
    await _send(stream, 1)
    assert [r["sequence_number"] for r in ingest.inserted] == [8, 9]
    assert ingest.inserted[-1]["totals"]["raw_bytes"] == 70 + MAX_CHUNK_BYTES + 4


async def test_receiving_goes_on_while_chunks_are_sealed_up_to_the_bound() -> None:
    ingest = Ingest()
    ingest.gate = asyncio.Event()
    stream = _stream(ingest)
    # IN_FLIGHT chunks are cut and handed off without waiting for any sealing.
    for _ in range(UploadStream.IN_FLIGHT * 4):
        await asyncio.wait_for(stream.feed(bytes(PIECE), 1, None), timeout=10)
    assert len(stream.flights) == UploadStream.IN_FLIGHT and not ingest.sealed
    # The next cut waits until the oldest chunk is durable.
    more = asyncio.create_task(_send(stream, 1))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not more.done() and not ingest.inserted
    ingest.gate.set()
    await asyncio.wait_for(more, timeout=10)
    assert [r["sequence_number"] for r in ingest.inserted] == list(range(1, 6))


@pytest.mark.parametrize("fail_at", [1, 3, 6])
async def test_a_failed_insert_stops_the_chunks_after_it(fail_at: int) -> None:
    ingest = Ingest(fail_at=fail_at)
    stream = _stream(ingest)
    with pytest.raises(LucidError) as caught:
        await _send(stream, 5)
    assert caught.value.reason == "LUCID_ERR_5003" and caught.value.message == "insert failed"
    # The failure surfaces once every chunk in flight has ended.
    assert stream.running == 0 and not stream.flights
    assert [r["sequence_number"] for r in ingest.inserted] == list(range(1, fail_at))
    # The blobs of the chunks after the failed one are removed.
    assert all(int(b.removeprefix("blob-")) > fail_at for b in ingest.discarded)
    assert {f"blob-{n}" for n in range(fail_at + 1, 7)} & ingest.written == set()
    # The bytes still buffered and new ones follow the last durable row: no gap.
    ingest.fail_at = 0
    await stream.feed(b"again", 1, None)
    await stream.flush()
    stored = [r["sequence_number"] for r in ingest.inserted]
    assert stored == list(range(1, len(stored) + 1)) and len(stored) >= fail_at
    assert stream.status()["last_sequence"] == len(stored)


async def test_a_refused_chunk_writes_nothing_and_stops_the_ones_after_it() -> None:
    ingest = Ingest(fail_at=2, stage="admit")
    stream = _stream(ingest)
    with pytest.raises(LucidError) as caught:
        await _send(stream, 4)
    assert caught.value.reason == "LUCID_ERR_4007"
    assert stream.running == 0 and not stream.flights
    assert [r["sequence_number"] for r in ingest.inserted] == [1]
    assert ingest.written == {"blob-1"}
    assert "blob-2" not in ingest.discarded  # never written


async def test_a_chunk_over_the_session_size_is_refused_before_its_blob_is_written() -> None:
    ingest = Ingest()

    async def small(session_id: str) -> Doc:
        return {"_id": session_id, "state": "recording", "storage": {"max_size_bytes": 100}}

    ingest.admissible = small  # type: ignore[method-assign]
    stream = _stream(ingest, {"sequence_number": 1, "totals": {"raw_bytes": 90}})
    await stream.feed(b"x" * 11, 1, None)
    with pytest.raises(LucidError) as caught:
        await stream.flush()
    assert caught.value.reason == "LUCID_ERR_4005"
    assert not ingest.written and not ingest.inserted
    await stream.feed(b"x" * 10, 1, None)
    await stream.flush()
    assert ingest.inserted[-1]["sequence_number"] == 2
