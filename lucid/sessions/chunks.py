"""Chunks of a session as the chunk rpcs see them: who may upload, the upload status,
reading and downloading chunks (each download audited), and chunk proofs."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.sessions.bandwidth import UploadBandwidth
from lucid.sessions.blobformat import BlobError, checksum_of
from lucid.sessions.blobstore import BlobCorruptedError
from lucid.sessions.finalize import AnchorClient, signed_document_of
from lucid.sessions.ingest import (
    ChunkIngest,
    ChunkInput,
    UploadStream,
    both,
    pieces_of,
    upload_status,
)
from lucid.sessions.proofs import build_chunk_proof
from lucid.sessions.service import Caller, Sessions
from lucid.sessions.states import State
from lucid.sessions.store.repository import Doc
from lucid.sessions.v1 import chunks_pb2


class Chunks:
    """Reads and proofs of stored chunks; the checks before an upload."""

    def __init__(
        self,
        sessions: Sessions,
        ingest: ChunkIngest,
        chain: AnchorClient,
        bandwidth: UploadBandwidth,
    ) -> None:
        self.sessions = sessions
        self.ingest = ingest
        self.chain = chain
        self.bandwidth = bandwidth
        self.repo = sessions.repo

    async def writable(self, session_id: str, caller: Caller) -> Doc:
        """A session the caller may upload to: its owner or a service (the recorder)."""
        doc = await self.sessions.get(session_id, caller)
        if caller.user_id and doc["owner_user_id"] != caller.user_id:
            raise not_found(f"session {session_id}")
        return doc

    async def open_stream(self, session_id: str, caller: Caller) -> UploadStream:
        """An upload stream into a session the caller may upload to, numbering its chunks
        after the last durable one (read together with the session, once per stream)."""
        session, last = await both(
            self.writable(session_id, caller), self.ingest.last_row(session_id)
        )
        fps = int((session.get("recording") or {}).get("frame_rate") or 30)
        return UploadStream(
            session["_id"],
            self.ingest,
            1.0 / fps,
            await self.ingest.sealing(session),
            last,
        )

    async def upload_status(self, session_id: str) -> dict[str, Any]:
        """The last durable sequence number, chunk count and durable bytes of a session."""
        return upload_status(await self.repo.last_chunk(session_id))

    async def store_one(
        self, session_id: str, chunk: ChunkInput, checksum: str, caller: Caller
    ) -> tuple[Doc, dict[str, Any]]:
        """Stores one chunk (checked against its SHA-256 when given) and the new status."""
        session = await self.writable(session_id, caller)
        if checksum:
            # Hashed once, off the event loop; the ingest reuses the checked digest.
            digest = await asyncio.to_thread(checksum_of, *pieces_of(chunk.data))
            if digest != checksum:
                raise LucidError(
                    ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "the data does not match its checksum"
                )
            chunk = dataclasses.replace(chunk, checksum=digest)
        await self.bandwidth.admit(caller, session_id, len(chunk.data))
        stored = await self.ingest.store_chunk(session_id, chunk, session)
        return stored.row, upload_status(stored.last)

    async def page(
        self, session_id: str, caller: Caller, sequence_from: int, *, offset: int, limit: int
    ) -> tuple[list[Doc], int]:
        """A page of a session's chunks in sequence order (from ``sequence_from``)."""
        await self.sessions.get(session_id, caller)
        query: Doc = {"session_id": session_id}
        if sequence_from:
            query["sequence_number"] = {"$gte": sequence_from}
        return await self.repo.list_chunks(query, offset, limit)

    async def get(self, session_id: str, chunk_id: str, caller: Caller) -> Doc:
        """One chunk of a session the caller may see."""
        await self.sessions.get(session_id, caller)
        row = await self.repo.chunk(session_id, chunk_id)
        if row is None:
            raise not_found(f"chunk {chunk_id}")
        return row

    async def content(
        self, session_id: str, chunk_id: str, caller: Caller, *, encrypted: bool
    ) -> tuple[Doc, bytes, str]:
        """A chunk's stored blob (``encrypted``) or its raw bytes, and their SHA-256;
        DATA_LOSS when the blob is corrupted. Every download is audited."""
        row = await self.get(session_id, chunk_id, caller)
        try:
            if encrypted:
                content = await asyncio.to_thread(self.ingest.store.get, row["merkle_hash"])
                digest = row["merkle_hash"]
            else:
                content = await self.ingest.read_chunk(row)
                digest = row["checksum"]
        except (BlobCorruptedError, BlobError) as exc:
            await self.sessions.audit(
                "chunk.download", session_id, caller, resource_id=row["_id"], success=False
            )
            raise LucidError(
                ErrorCode.ERROR_CODE_DATA_LOSS,
                f"chunk {row['_id']} is corrupted: {exc}",
                metadata={"chunk_id": row["_id"], "merkle_hash": row["merkle_hash"]},
            ) from exc
        await self.sessions.audit("chunk.download", session_id, caller, resource_id=row["_id"])
        return row, content, digest

    async def proof(self, session_id: str, chunk_id: str, caller: Caller) -> chunks_pb2.ChunkProof:
        """The proof that a chunk is in its session's signed, anchored Merkle root."""
        row = await self.get(session_id, chunk_id, caller)
        session = await self.sessions.get(session_id, caller)
        manifest = await self.repo.manifest_of(session_id)
        if manifest is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_SESSION_NOT_ANCHORED,
                f"session {session_id} has no manifest yet",
                metadata={"state": str(session["state"])},
            )
        chain = None
        if session["state"] == State.COMPLETED:
            chain = await self.chain.proof(session_id)
        return build_chunk_proof(
            session,
            manifest=manifest,
            chunks=await self.repo.chunks_of(session_id),
            chunk=row,
            signed_document=signed_document_of(manifest),
            chain=chain,
        )
