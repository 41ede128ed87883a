"""The other clusters' rpcs the admin cluster calls, as the admin service.

A failure of the owning cluster becomes ``LucidError(UPSTREAM_UNAVAILABLE)`` naming
the cluster and its reason, so the emergency log and audit entry can say what failed.
"""

from __future__ import annotations

import grpc

from lucid.rdp.v1 import session_pb2 as rdp_pb2
from lucid.rdp.v1 import session_pb2_grpc as rdp_pb2_grpc
from lucid.runtime.channels import Channels
from lucid.runtime.errors import ErrorCode, ErrorDetails, LucidError
from lucid.runtime.wire import duration
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc

CALL_TIMEOUT_S = 30.0


def _failed(cluster: str, error: grpc.aio.AioRpcError) -> LucidError:
    found = ErrorDetails.from_rpc_error(error)
    return LucidError(
        ErrorCode.ERROR_CODE_UPSTREAM_UNAVAILABLE,
        f"{cluster} refused or failed: {error.code().name} {found.reason} {found.message}".strip(),
        metadata={"cluster": cluster, "reason": found.reason},
    )


class SessionsClient:
    """The sessions cluster's emergency rpcs."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def _stub(self) -> sessions_pb2_grpc.SessionServiceStub:
        return await self._channels.stub("sessions", sessions_pb2_grpc.SessionServiceStub)

    async def set_creation(self, enabled: bool, reason: str, auto_revert_s: int | None) -> None:
        """SetSessionCreationEnabled."""
        request = sessions_pb2.SetSessionCreationEnabledRequest(enabled=enabled, reason=reason)
        if auto_revert_s:
            request.auto_revert.CopyFrom(duration(auto_revert_s))
        try:
            await (await self._stub()).SetSessionCreationEnabled(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise _failed("sessions", exc) from exc

    async def stop_all(self, reason: str) -> int:
        """StopAllRecordings."""
        request = sessions_pb2.StopAllRecordingsRequest(reason=reason, confirm=True)
        try:
            reply = await (await self._stub()).StopAllRecordings(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise _failed("sessions", exc) from exc
        return int(reply.stopped_count)


class RdpClient:
    """The rdp cluster's emergency rpc."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def terminate_all(self, reason: str, user_id: str) -> int | None:
        """TerminateAllRdpSessions; None while rdp answers UNIMPLEMENTED."""
        stub = await self._channels.stub("rdp", rdp_pb2_grpc.RdpSessionServiceStub)
        request = rdp_pb2.TerminateAllRdpSessionsRequest(
            reason=reason, requested_by_user_id=user_id
        )
        try:
            reply = await stub.TerminateAllRdpSessions(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise _failed("rdp", exc) from exc
        return int(reply.terminated_count)
