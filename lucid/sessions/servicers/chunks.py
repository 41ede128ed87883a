"""``lucid.sessions.v1.ChunkService``: uploads (streamed and unary), upload status,
chunk reads and downloads, and chunk proofs, translated to the domain (``chunks``,
``ingest``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from lucid.runtime import paging
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.wire import seconds
from lucid.sessions import convert
from lucid.sessions.blobformat import MAX_CHUNK_BYTES
from lucid.sessions.chunks import Chunks
from lucid.sessions.convert import caller as caller_of
from lucid.sessions.ingest import ChunkInput, OpenStreams, UploadStream
from lucid.sessions.v1 import chunks_pb2, chunks_pb2_grpc

DOWNLOAD_PIECE = 1024 * 1024
UPLOAD_BYTES_PER_SECOND = 10 * 1024 * 1024


class ChunkServicer(chunks_pb2_grpc.ChunkServiceServicer):
    """Chunks of a session."""

    def __init__(self, chunks: Chunks, streams: OpenStreams) -> None:
        self.chunks = chunks
        self.streams = streams

    async def UploadChunks(
        self,
        request_iterator: AsyncIterator[chunks_pb2.UploadChunksRequest],
        context: grpc.aio.ServicerContext,
    ) -> chunks_pb2.UploadChunksResponse:
        caller = caller_of(context)
        stream: UploadStream | None = None
        unregister = None
        try:
            async for message in request_iterator:
                if stream is None:
                    if not message.session_id:
                        raise LucidError(
                            ErrorCode.ERROR_CODE_MISSING_FIELD,
                            "the first message of an upload names the session",
                        )
                    stream = await self.chunks.open_stream(message.session_id, caller)
                    unregister = self.streams.add(stream)
                capture = (
                    message.capture_time.ToDatetime() if message.HasField("capture_time") else None
                )
                data = message.data  # each read of a bytes field copies it
                if data:
                    await stream.feed(data, message.frame_count, capture)
                if message.flush:
                    await stream.flush()
            if stream is None:
                raise LucidError(ErrorCode.ERROR_CODE_MISSING_FIELD, "an upload names its session")
            if not stream.closed:
                await stream.flush()
        finally:
            if stream is not None:
                await stream.abandon()
            if unregister is not None:
                unregister()
        status = stream.status()
        return chunks_pb2.UploadChunksResponse(
            session_id=stream.session_id,
            last_durable_sequence=status["last_sequence"],
            chunk_count=status["chunk_count"],
            durable_bytes=status["durable_bytes"],
            received_bytes=stream.received,
            stored_chunk_count=stream.stored,
        )

    async def UploadChunk(
        self, request: chunks_pb2.UploadChunkRequest, context: grpc.aio.ServicerContext
    ) -> chunks_pb2.UploadChunkResponse:
        row, status = await self.chunks.store_one(
            request.session_id,
            ChunkInput(
                sequence_number=request.sequence_number,
                data=request.data,
                frame_count=request.frame_count,
                duration_s=seconds(request.duration),
                capture_time=(
                    request.capture_time.ToDatetime() if request.HasField("capture_time") else None
                ),
            ),
            request.checksum,
            caller_of(context),
        )
        return chunks_pb2.UploadChunkResponse(
            chunk=convert.chunk(row), last_durable_sequence=status["last_sequence"]
        )

    async def GetUploadStatus(
        self, request: chunks_pb2.GetUploadStatusRequest, context: grpc.aio.ServicerContext
    ) -> chunks_pb2.GetUploadStatusResponse:
        doc = await self.chunks.sessions.get(request.session_id, caller_of(context))
        status = await self.chunks.upload_status(request.session_id)
        return chunks_pb2.GetUploadStatusResponse(
            session_id=request.session_id,
            state=convert.state_value(doc["state"]),
            last_durable_sequence=status["last_sequence"],
            chunk_count=status["chunk_count"],
            durable_bytes=status["durable_bytes"],
            max_chunk_bytes=MAX_CHUNK_BYTES,
            max_bytes_per_second=UPLOAD_BYTES_PER_SECOND,
        )

    async def ListChunks(
        self, request: chunks_pb2.ListChunksRequest, context: grpc.aio.ServicerContext
    ) -> chunks_pb2.ListChunksResponse:
        if request.state and request.state != chunks_pb2.CHUNK_STATE_STORED:
            await self.chunks.sessions.get(request.session_id, caller_of(context))
            return chunks_pb2.ListChunksResponse()
        page = paging.page(request, default=100)
        docs, total = await self.chunks.page(
            request.session_id,
            caller_of(context),
            request.sequence_from,
            offset=page.offset,
            limit=page.size,
        )
        return chunks_pb2.ListChunksResponse(
            chunks=[convert.chunk(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    async def GetChunk(
        self, request: chunks_pb2.GetChunkRequest, context: grpc.aio.ServicerContext
    ) -> chunks_pb2.GetChunkResponse:
        row = await self.chunks.get(request.session_id, request.chunk_id, caller_of(context))
        return chunks_pb2.GetChunkResponse(chunk=convert.chunk(row))

    async def DownloadChunk(
        self, request: chunks_pb2.DownloadChunkRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chunks_pb2.DownloadChunkResponse]:
        _, content, digest = await self.chunks.content(
            request.session_id, request.chunk_id, caller_of(context), encrypted=request.encrypted
        )
        for offset in range(0, max(len(content), 1), DOWNLOAD_PIECE):
            first = offset == 0
            yield chunks_pb2.DownloadChunkResponse(
                data=content[offset : offset + DOWNLOAD_PIECE],
                offset=offset,
                total_size_bytes=len(content) if first else 0,
                sha256=digest if first else "",
            )

    async def GetChunkProof(
        self, request: chunks_pb2.GetChunkProofRequest, context: grpc.aio.ServicerContext
    ) -> chunks_pb2.GetChunkProofResponse:
        proof = await self.chunks.proof(request.session_id, request.chunk_id, caller_of(context))
        return chunks_pb2.GetChunkProofResponse(proof=proof)
