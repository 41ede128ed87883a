"""The rdp cluster's side of cluster 03: recording sessions, over its rpcs only.

An RDP session's recording is a cluster 03 session with the same id, created and
started on behalf of the session's owner; segments go in through ``UploadChunks``
(one call per segment, ending in a flush, so each segment is exactly one chunk);
terminate stops it and has cluster 03 finalize it (Merkle root, manifest, anchor).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import grpc

from lucid.runtime import wire
from lucid.runtime.channels import Channels
from lucid.runtime.errors import ErrorCode, ErrorDetails, reason_of
from lucid.sessions.v1 import chunks_pb2, chunks_pb2_grpc, sessions_pb2, sessions_pb2_grpc

FINALIZE_TIMEOUT_S = 60.0
EMPTY = ErrorCode.ERROR_CODE_SESSION_EMPTY


class SegmentSink(Protocol):
    """Where recorded segments go."""

    async def upload(self, session_id: str, data: bytes, frames: int, captured_at: datetime) -> int:
        """Stores one segment as one chunk; the session's last durable sequence."""
        ...


class Recordings:
    """Calls cluster 03 as the rdp service."""

    def __init__(self, channels: Channels) -> None:
        self.channels = channels

    async def _sessions(self) -> sessions_pb2_grpc.SessionServiceStub:
        return await self.channels.stub("sessions", sessions_pb2_grpc.SessionServiceStub)

    async def begin(
        self,
        *,
        session_id: str,
        owner_user_id: str,
        server_id: str,
        server_name: str,
        host: str,
        port: int,
        username: str,
        frame_rate: int,
        resolution: str,
    ) -> None:
        """Creates the recording session with the RDP session's id and starts it."""
        stub = await self._sessions()
        await stub.CreateSession(
            sessions_pb2.CreateSessionRequest(
                session_id=session_id,
                owner_user_id=owner_user_id,
                name=f"RDP {server_name}"[:255],
                rdp_config=sessions_pb2.RdpConfig(host=host, port=port, username=username),
                recording_config=sessions_pb2.RecordingConfig(
                    frame_rate=frame_rate, resolution=resolution
                ),
                rdp_server_id=server_id,
            )
        )
        await stub.StartRecording(sessions_pb2.StartRecordingRequest(session_id=session_id))

    async def upload(self, session_id: str, data: bytes, frames: int, captured_at: datetime) -> int:
        stub = await self.channels.stub("sessions", chunks_pb2_grpc.ChunkServiceStub)
        message = chunks_pb2.UploadChunksRequest(
            session_id=session_id,
            data=data,
            frame_count=frames,
            capture_time=wire.timestamp(captured_at),
            flush=True,
        )

        async def one() -> object:
            yield message

        response = await stub.UploadChunks(one())
        return int(response.last_durable_sequence)

    async def finish(self, session_id: str) -> None:
        """Stops the recording and has cluster 03 finalize it. A recording without a
        chunk (no client ever logged in) has nothing to anchor; that is not a failure."""
        stub = await self._sessions()
        await stub.StopRecording(sessions_pb2.StopRecordingRequest(session_id=session_id))
        try:
            await stub.FinalizeSession(
                sessions_pb2.FinalizeSessionRequest(session_id=session_id),
                timeout=FINALIZE_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            if ErrorDetails.from_rpc_error(exc).reason != reason_of(EMPTY):
                raise

    async def abandon(self, session_id: str) -> None:
        """Stops a recording that could not begin properly (best effort)."""
        stub = await self._sessions()
        await stub.StopRecording(sessions_pb2.StopRecordingRequest(session_id=session_id))
