"""Replay of a recording: every segment checked against the session's anchored
Merkle root before it is used.

For each chunk in sequence order: its proof (``GetChunkProof``) must carry a final
anchor; the stored blob (``DownloadChunk`` encrypted) must hash to the proof's leaf
entry; the leaf's inclusion proof must lead to the session root, and that root be
the one the proof says was anchored; ``ProofCheck`` adds whatever else the caller
verifies (the ``lucid replay`` command checks every signature of the chain part
too). Only then is the plaintext segment fetched (cluster 03 decrypts it with the
session key) and checked against the chunk's checksum. A segment that fails any
check raises ``LucidError`` ``LUCID_ERR_4307`` naming the segment and the link.

Calls go to cluster 03 with the user's bearer token: a user replays only what
cluster 03 lets them read.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from lucid.lib import merkle
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.sessions.v1 import chunks_pb2, chunks_pb2_grpc

ProofCheck = Callable[[chunks_pb2.ChunkProof, bytes], Sequence[str]]
"""Extra checks of a proof and its blob; returns what fails (empty: it holds)."""
PAGE = 1000


@dataclass(frozen=True)
class Segment:
    """One verified segment."""

    sequence_number: int
    data: bytes
    merkle_hash: str
    merkle_root: str
    count: int


def unverified(sequence: int, why: str) -> LucidError:
    """The refusal of one segment."""
    return LucidError(
        ErrorCode.ERROR_CODE_RDP_SEGMENT_UNVERIFIED,
        f"segment {sequence} is refused: {why}",
        metadata={"sequence_number": str(sequence)},
    )


def merkle_failures(proof: chunks_pb2.ChunkProof, blob: bytes) -> list[str]:
    """The checks every replay makes: anchored, blob ↔ leaf, leaf → root."""
    failures = []
    if not (proof.HasField("anchor") and proof.anchor.final):
        failures.append("the session is not anchored in a final block")
    if hashlib.sha256(blob).hexdigest() != proof.merkle_hash:
        failures.append("the stored blob does not hash to its Merkle leaf")
    inclusion = proof.chunk_proof
    try:
        leaf = merkle.leaf_hash(bytes.fromhex(proof.merkle_hash))
        path = [bytes.fromhex(p) for p in inclusion.audit_path]
        root = bytes.fromhex(proof.merkle_root)
    except ValueError:
        return [*failures, "the proof is not hex"]
    if inclusion.root_hash != proof.merkle_root or not merkle.verify_inclusion(
        leaf, int(inclusion.leaf_index), int(inclusion.tree_size), path, root
    ):
        failures.append("the leaf's inclusion proof does not lead to the anchored root")
    if int(inclusion.leaf_index) != proof.sequence_number - 1:
        failures.append("the proof is of another position")
    return failures


class Replay:
    """Reads a session's chunks from cluster 03 and yields verified segments."""

    def __init__(
        self,
        channel: Callable[[], Awaitable[grpc.aio.Channel]],
        check: ProofCheck | None = None,
    ) -> None:
        self._channel = channel
        self._check = check

    async def _stub(self) -> chunks_pb2_grpc.ChunkServiceStub:
        return chunks_pb2_grpc.ChunkServiceStub(await self._channel())

    async def _download(
        self,
        stub: chunks_pb2_grpc.ChunkServiceStub,
        chunk: chunks_pb2.Chunk,
        metadata: Sequence[tuple[str, str]],
        *,
        encrypted: bool,
    ) -> bytes:
        parts = []
        request = chunks_pb2.DownloadChunkRequest(
            session_id=chunk.session_id, chunk_id=chunk.chunk_id, encrypted=encrypted
        )
        try:
            async for piece in stub.DownloadChunk(request, metadata=metadata):
                parts.append(piece.data)
        except grpc.aio.AioRpcError as exc:
            raise unverified(
                chunk.sequence_number, f"cluster 03 refused it: {exc.code().name} {exc.details()}"
            ) from exc
        return b"".join(parts)

    async def segments(self, session_id: str, token: str) -> AsyncIterator[Segment]:
        """The session's segments in order, each verified before it is yielded."""
        stub = await self._stub()
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        chunks: list[chunks_pb2.Chunk] = []
        page_token = ""
        while True:
            listed = await stub.ListChunks(
                chunks_pb2.ListChunksRequest(
                    session_id=session_id, page_size=PAGE, page_token=page_token
                ),
                metadata=metadata,
            )
            chunks.extend(listed.chunks)
            page_token = listed.next_page_token
            if not page_token:
                break
        chunks.sort(key=lambda c: c.sequence_number)
        for chunk in chunks:
            proof = (
                await stub.GetChunkProof(
                    chunks_pb2.GetChunkProofRequest(session_id=session_id, chunk_id=chunk.chunk_id),
                    metadata=metadata,
                )
            ).proof
            blob = await self._download(stub, chunk, metadata, encrypted=True)
            failures = merkle_failures(proof, blob)
            if self._check is not None:
                failures += self._check(proof, blob)
            if failures:
                raise unverified(chunk.sequence_number, "; ".join(failures))
            data = await self._download(stub, chunk, metadata, encrypted=False)
            if hashlib.sha256(data).hexdigest() != chunk.checksum:
                raise unverified(chunk.sequence_number, "the decrypted bytes fail their checksum")
            yield Segment(
                chunk.sequence_number, data, proof.merkle_hash, proof.merkle_root, len(chunks)
            )


async def write(segments: AsyncIterator[Segment], out: Path) -> int:
    """Writes segments one after another into a playable MPEG-TS file; how many."""
    count = 0
    partial = out.with_name(out.name + ".partial")
    with partial.open("wb") as fh:
        async for segment in segments:
            fh.write(segment.data)
            count += 1
    partial.replace(out)
    return count
