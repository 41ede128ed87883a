"""Replay of a recording: every segment checked against the session's anchored
Merkle root, and that anchor against the chain's trust anchor, before it is used.

For each chunk in sequence order: its proof (``GetChunkProof``) and stored blob
(``DownloadChunk`` encrypted) go through ``lucid.lib.chunkproof.verify_chunk_proof``
with the trust anchor: the blob hashes to the leaf entry, the inclusion proof leads
to the session root, the signed manifest states it, the anchoring transaction and
the block header are signed by validators of the anchor and the block approved by
two thirds of them. Only then is the plaintext segment fetched (cluster 03 decrypts
it with the session key) and checked against the chunk's checksum. A segment that
fails any check raises ``LucidError`` ``LUCID_ERR_4307`` naming the segment and the
link.

Calls go to cluster 03 with the user's bearer token: a user replays only what
cluster 03 lets them read.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from lucid.blockchain.v1 import blockchain_pb2, blockchain_pb2_grpc
from lucid.lib.chunkproof import failed, verify_chunk_proof
from lucid.lib.trustanchor import TrustAnchor
from lucid.runtime.chaintrust import anchor_of_response
from lucid.runtime.channels import Channels
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.sessions.v1 import chunks_pb2, chunks_pb2_grpc

AnchorSource = Callable[[], Awaitable[TrustAnchor]]
"""Where the trust anchor comes from (a file read once, or the chain)."""
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


class TrustAnchors:
    """The chain's trust anchor, asked of the chain once (``GetTrustAnchor``, as the rdp
    service) and kept: it changes only with the validator set."""

    def __init__(self, channels: Channels) -> None:
        self.channels = channels
        self._anchor: TrustAnchor | None = None

    async def get(self) -> TrustAnchor:
        """The anchor."""
        if self._anchor is None:
            stub = await self.channels.stub("blockchain", blockchain_pb2_grpc.BlockchainServiceStub)
            response = await stub.GetTrustAnchor(blockchain_pb2.GetTrustAnchorRequest())
            self._anchor = anchor_of_response(response)
        return self._anchor


class Replay:
    """Reads a session's chunks from cluster 03 and yields verified segments."""

    def __init__(
        self, channel: Callable[[], Awaitable[grpc.aio.Channel]], anchor: AnchorSource
    ) -> None:
        self._channel = channel
        self._anchor = anchor

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
        anchor = await self._anchor()
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
            failures = failed(verify_chunk_proof(proof, anchor=anchor, blob=blob))
            if failures:
                why = "; ".join(f"{c.name}: {c.detail}" if c.detail else c.name for c in failures)
                raise unverified(chunk.sequence_number, why)
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
