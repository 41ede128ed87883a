"""The upload stream's ordering (lucid.sessions.ingest.UploadStream), against a stand-in
for the ingest that records what it is asked: chunks are stored in order, the next one
is sealed while the one before is inserted, never more than two are in flight, and a
failure stops every chunk after it from being inserted and surfaces at the flush."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lucid.runtime.errors import ErrorCode, LucidError
from lucid.sessions.blobformat import MAX_CHUNK_BYTES
from lucid.sessions.ingest import ChunkInput, Predecessor, UploadStream

Doc = dict[str, Any]


class Ingest:
    """Seals at once, inserts slowly; fails the chunk ``fail_at`` after sealing it."""

    def __init__(self, fail_at: int = 0) -> None:
        self.fail_at = fail_at
        self.inserted: list[Doc] = []
        self.busy = 0
        self.most_busy = 0
        self.sealed_while_inserting = 0
        self.inserting = False

    async def last_row(self, session_id: str) -> Doc | None:
        return None

    async def store_chunk(
        self,
        session_id: str,
        chunk: ChunkInput,
        predecessor: Predecessor | None = None,
        *,
        after: Awaitable[Doc] | None = None,
        on_sealed: Callable[[Doc], None] | None = None,
    ) -> tuple[Doc, bool]:
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            assert predecessor is not None
            before = predecessor.row
            assert chunk.sequence_number == (before["sequence_number"] if before else 0) + 1
            await asyncio.sleep(0)
            if self.inserting:
                self.sealed_while_inserting += 1
            raw = (before["totals"]["raw_bytes"] if before else 0) + len(chunk.data)
            row = {"sequence_number": chunk.sequence_number, "totals": {"raw_bytes": raw}}
            if on_sealed is not None:
                on_sealed(row)
            if after is not None:
                durable = await after
                assert durable == before
            if chunk.sequence_number == self.fail_at:
                raise LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, "insert failed")
            self.inserting = True
            await asyncio.sleep(0.02)
            self.inserting = False
            self.inserted.append(row)
            return row, True
        finally:
            self.busy -= 1


async def _send(stream: UploadStream, chunks: int) -> None:
    piece = bytes(MAX_CHUNK_BYTES // 4)
    for _ in range(chunks * 4):
        await stream.feed(piece, 1, None)
    await stream.feed(b"tail", 1, None)
    await stream.flush()


async def test_chunks_are_stored_in_order_two_at_most_in_flight() -> None:
    ingest = Ingest()
    stream = UploadStream("s", ingest, 1 / 30)  # type: ignore[arg-type]
    await _send(stream, 5)
    assert [r["sequence_number"] for r in ingest.inserted] == [1, 2, 3, 4, 5, 6]
    assert ingest.inserted[-1]["totals"]["raw_bytes"] == 5 * MAX_CHUNK_BYTES + 4
    assert ingest.most_busy == 2
    assert ingest.sealed_while_inserting > 0
    assert stream.stored == 6 and not stream.flights


@pytest.mark.parametrize("fail_at", [1, 3, 6])
async def test_a_failed_chunk_stops_the_ones_after_it(fail_at: int) -> None:
    ingest = Ingest(fail_at=fail_at)
    stream = UploadStream("s", ingest, 1 / 30)  # type: ignore[arg-type]
    with pytest.raises(LucidError) as caught:
        await _send(stream, 5)
    assert caught.value.reason == "LUCID_ERR_5003" and caught.value.message == "insert failed"
    assert [r["sequence_number"] for r in ingest.inserted] == list(range(1, fail_at))
    await stream.abandon()
    assert ingest.busy == 0
