"""gRPC adapter of ChunkService: uploads (streamed and unary), upload status,
chunk reads and downloads, and chunk proofs."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import grpc

from lucid.runtime import paging
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.sessions import convert
from lucid.sessions.bandwidth import UploadBandwidth
from lucid.sessions.blobformat import MAX_CHUNK_BYTES, BlobError
from lucid.sessions.blobstore import BlobCorruptedError
from lucid.sessions.finalize import AnchorClient, signed_document_of
from lucid.sessions.ingest import ChunkIngest, ChunkInput, OpenStreams, UploadStream, upload_status
from lucid.sessions.proofs import build_chunk_proof
from lucid.sessions.repository import Doc
from lucid.sessions.service import Caller, Sessions
from lucid.sessions.servicer import caller_of
from lucid.sessions.states import State
from lucid.sessions.v1 import chunks_pb2, chunks_pb2_grpc

DOWNLOAD_PIECE = 1024 * 1024
UPLOAD_BYTES_PER_SECOND = 10 * 1024 * 1024


class ChunkServicer(chunks_pb2_grpc.ChunkServiceServicer):
    """Chunks of a session."""

    def __init__(
        self,
        sessions: Sessions,
        ingest: ChunkIngest,
        streams: OpenStreams,
        chain: AnchorClient,
        bandwidth: UploadBandwidth,
    ) -> None:
        self.sessions = sessions
        self.ingest = ingest
        self.streams = streams
        self.chain = chain
        self.bandwidth = bandwidth

    async def _writable(self, session_id: str, caller: Caller) -> Doc:
        """A session the caller may upload to: its owner or a service (the recorder)."""
        doc = await self.sessions.get(session_id, caller)
        if caller.user_id and doc["owner_user_id"] != caller.user_id:
            raise not_found(f"session {session_id}")
        return doc

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
                    session = await self._writable(message.session_id, caller)
                    fps = int((session.get("recording") or {}).get("frame_rate") or 30)
                    stream = UploadStream(session["_id"], self.ingest, 1.0 / fps)
                    unregister = self.streams.add(stream)
                capture = (
                    message.capture_time.ToDatetime() if message.HasField("capture_time") else None
                )
                if message.data:
                    await stream.feed(message.data, message.frame_count, capture)
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
        status = upload_status(await self.sessions.repo.last_chunk(stream.session_id))
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
        caller = caller_of(context)
        await self._writable(request.session_id, caller)
        if request.checksum and hashlib.sha256(request.data).hexdigest() != request.checksum:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "the data does not match its checksum"
            )
        await self.bandwidth.admit(caller, request.session_id, len(request.data))
        row, _ = await self.ingest.store_chunk(
            request.session_id,
            ChunkInput(
                sequence_number=request.sequence_number,
                data=request.data,
                frame_count=request.frame_count,
                duration_s=request.duration.ToTimedelta().total_seconds(),
                capture_time=(
                    request.capture_time.ToDatetime() if request.HasField("capture_time") else None
                ),
            ),
        )
        status = upload_status(await self.sessions.repo.last_chunk(request.session_id))
        return chunks_pb2.UploadChunkResponse(
            chunk=convert.chunk(row), last_durable_sequence=status["last_sequence"]
        )

    async def GetUploadStatus(
        self, request: chunks_pb2.GetUploadStatusRequest, context: grpc.aio.ServicerContext
    ) -> chunks_pb2.GetUploadStatusResponse:
        doc = await self.sessions.get(request.session_id, caller_of(context))
        status = upload_status(await self.sessions.repo.last_chunk(request.session_id))
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
        await self.sessions.get(request.session_id, caller_of(context))
        query: Doc = {"session_id": request.session_id}
        if request.sequence_from:
            query["sequence_number"] = {"$gte": request.sequence_from}
        if request.state and request.state != chunks_pb2.CHUNK_STATE_STORED:
            return chunks_pb2.ListChunksResponse()
        page = paging.page(request, default=100)
        docs, total = await self.sessions.repo.list_chunks(query, page.offset, page.size)
        return chunks_pb2.ListChunksResponse(
            chunks=[convert.chunk(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    async def _chunk(self, session_id: str, chunk_id: str, caller: Caller) -> Doc:
        await self.sessions.get(session_id, caller)
        row = await self.sessions.repo.chunk(session_id, chunk_id)
        if row is None:
            raise not_found(f"chunk {chunk_id}")
        return row

    async def GetChunk(
        self, request: chunks_pb2.GetChunkRequest, context: grpc.aio.ServicerContext
    ) -> chunks_pb2.GetChunkResponse:
        row = await self._chunk(request.session_id, request.chunk_id, caller_of(context))
        return chunks_pb2.GetChunkResponse(chunk=convert.chunk(row))

    async def DownloadChunk(
        self, request: chunks_pb2.DownloadChunkRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chunks_pb2.DownloadChunkResponse]:
        caller = caller_of(context)
        row = await self._chunk(request.session_id, request.chunk_id, caller)
        try:
            if request.encrypted:
                content = self.ingest.store.get(row["merkle_hash"])
                digest = row["merkle_hash"]
            else:
                content = await self.ingest.read_chunk(row)
                digest = row["checksum"]
        except (BlobCorruptedError, BlobError) as exc:
            await self.sessions.audit(
                "chunk.download", request.session_id, caller, resource_id=row["_id"], success=False
            )
            raise LucidError(
                ErrorCode.ERROR_CODE_DATA_LOSS,
                f"chunk {row['_id']} is corrupted: {exc}",
                metadata={"chunk_id": row["_id"], "merkle_hash": row["merkle_hash"]},
            ) from exc
        await self.sessions.audit(
            "chunk.download", request.session_id, caller, resource_id=row["_id"]
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
        caller = caller_of(context)
        row = await self._chunk(request.session_id, request.chunk_id, caller)
        session = await self.sessions.get(request.session_id, caller)
        manifest = await self.sessions.repo.manifest_of(request.session_id)
        if manifest is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_SESSION_NOT_ANCHORED,
                f"session {request.session_id} has no manifest yet",
                metadata={"state": str(session["state"])},
            )
        chain = None
        if session["state"] == State.COMPLETED:
            chain = await self.chain.proof(request.session_id)
        chunks = await self.sessions.repo.chunks_of(request.session_id)
        proof = build_chunk_proof(
            session,
            manifest=manifest,
            chunks=chunks,
            chunk=row,
            signed_document=signed_document_of(manifest),
            chain=chain,
        )
        return chunks_pb2.GetChunkProofResponse(proof=proof)
