"""The other clusters' rpcs the admin cluster calls, as the admin service.

A failure of the owning cluster becomes ``LucidError(UPSTREAM_UNAVAILABLE)`` naming
the cluster and its reason, so the emergency log and audit entry can say what failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.blockchain.v1 import blockchain_pb2, blockchain_pb2_grpc
from lucid.rdp.v1 import session_pb2 as rdp_pb2
from lucid.rdp.v1 import session_pb2_grpc as rdp_pb2_grpc
from lucid.runtime.channels import Channels, UnavailableClusterError
from lucid.runtime.errors import ErrorCode, ErrorDetails, LucidError
from lucid.runtime.wire import duration, moment
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc

CALL_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 1.0
LIST_PAGE = 100


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


@dataclass(frozen=True)
class SessionView:
    """What admin shows of a recording session."""

    session_id: str
    owner_user_id: str
    name: str
    state: str
    start_time: datetime | None
    last_activity_time: datetime | None
    server_id: str
    chunk_count: int = 0
    size_bytes: int = 0
    merkle_root: str = ""
    anchor_tx_hash: str = ""
    anchor_block_height: int = 0
    end_time: datetime | None = None


def session_view(session: sessions_pb2.Session) -> SessionView:
    """The view of a sessions-cluster Session."""
    return SessionView(
        session_id=session.session_id,
        owner_user_id=session.owner_user_id,
        name=session.name,
        state=sessions_pb2.SessionState.Name(session.state).removeprefix("SESSION_STATE_").lower(),
        start_time=moment(session.start_time) if session.HasField("start_time") else None,
        last_activity_time=moment(session.update_time) if session.HasField("update_time") else None,
        server_id=session.rdp_server_id,
        chunk_count=session.statistics.chunk_count,
        size_bytes=session.statistics.stored_size_bytes,
        merkle_root=session.merkle_root,
        anchor_tx_hash=session.anchoring.tx_hash,
        anchor_block_height=session.anchoring.block_height,
        end_time=moment(session.stop_time) if session.HasField("stop_time") else None,
    )


@dataclass(frozen=True)
class SessionLogLine:
    """One audit event of a session, as a log line."""

    at: datetime | None
    level: str
    source: str
    message: str


def log_line(event: sessions_pb2.SessionEvent) -> SessionLogLine:
    """A session event as a log line: who did what to which resource, and whether it
    succeeded."""
    what = f"{event.event_type} by {event.user_id or 'the system'}"
    if event.resource_id:
        what += f" on {event.resource_id}"
    return SessionLogLine(
        at=moment(event.event_time) if event.HasField("event_time") else None,
        level="info" if event.success else "error",
        source="sessions",
        message=what if event.success else f"{what} (failed)",
    )


async def call_cluster(
    channels: Channels,
    cluster: str,
    stub_type: Any,
    method: str,
    request: Any,
    *,
    token: str = "",
) -> Any:
    """One rpc of another cluster: on behalf of the administrator whose ``token`` is
    forwarded, or as the admin service without one; a refusal keeps its Lucid code."""
    stub = await channels.stub(cluster, stub_type)
    try:
        return await getattr(stub, method)(
            request, metadata=bearer(token) if token else None, timeout=CALL_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as exc:
        raise refused(cluster, exc) from exc


class SessionsAsAdmin:
    """Sessions rpcs made on behalf of the signed-in administrator (its token forwarded)."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def _call(self, method: str, request: Any, token: str) -> Any:
        stub_type = sessions_pb2_grpc.SessionServiceStub
        return await call_cluster(
            self._channels, "sessions", stub_type, method, request, token=token
        )

    async def stop(self, session_id: str, token: str) -> SessionView:
        """StopRecording as the administrator; the session's owning cluster decides."""
        request = sessions_pb2.StopRecordingRequest(session_id=session_id)
        return session_view((await self._call("StopRecording", request, token)).session)

    async def retry_anchoring(self, session_id: str, reason: str, token: str) -> SessionView:
        """RetryAnchoring as the administrator (a failed or expired anchoring only)."""
        request = sessions_pb2.RetryAnchoringRequest(session_id=session_id, reason=reason)
        return session_view((await self._call("RetryAnchoring", request, token)).session)

    async def events(
        self, session_id: str, page_size: int, page_token: str, token: str
    ) -> tuple[list[SessionLogLine], str, int]:
        """One page of ListSessionEvents as the administrator, newest first."""
        request = sessions_pb2.ListSessionEventsRequest(
            session_id=session_id, page_size=page_size, page_token=page_token
        )
        reply = await self._call("ListSessionEvents", request, token)
        return [log_line(e) for e in reply.events], reply.next_page_token, int(reply.total_size)

    async def get(self, session_id: str, token: str) -> SessionView:
        """GetSession as the administrator."""
        request = sessions_pb2.GetSessionRequest(session_id=session_id)
        return session_view((await self._call("GetSession", request, token)).session)

    async def list_page(
        self, owner_user_id: str, page_token: str, token: str
    ) -> tuple[list[SessionView], str, int]:
        """One page (up to 100) of ListSessions as the administrator, newest first."""
        request = sessions_pb2.ListSessionsRequest(
            owner_user_id=owner_user_id, page_size=LIST_PAGE, page_token=page_token
        )
        reply = await self._call("ListSessions", request, token)
        views = [session_view(s) for s in reply.sessions]
        return views, reply.next_page_token, int(reply.total_size)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def refused(cluster: str, error: grpc.aio.AioRpcError) -> LucidError:
    """The owning cluster's refusal, kept as its Lucid code (not found stays not found)."""
    found = ErrorDetails.from_rpc_error(error)
    code = found.code
    if code is None:
        return _failed(cluster, error)
    return LucidError(
        code,
        found.message,
        metadata={"cluster": cluster},
        field_violations=list(found.field_violations),
    )


@dataclass(frozen=True)
class Profile:
    """Who the signed-in administrator is, as auth knows them."""

    user_id: str
    tron_address: str
    username: str
    role: int
    totp_enabled: bool


class AuthAsAdmin:
    """Auth's CheckTotp and GetProfile for the signed-in administrator (its token
    forwarded)."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def check(self, code: str, token: str) -> None:
        """Raises auth's refusal (TOTP invalid, account locked) as a ``LucidError``."""
        stub = await self._channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
        try:
            await stub.CheckTotp(
                auth_pb2.CheckTotpRequest(code=code),
                metadata=bearer(token),
                timeout=CALL_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            raise refused("auth", exc) from exc

    async def profile(self, token: str) -> Profile:
        """GetProfile: the caller as auth knows them."""
        stub = await self._channels.stub("auth", auth_pb2_grpc.AuthServiceStub)
        try:
            reply = await stub.GetProfile(
                auth_pb2.GetProfileRequest(), metadata=bearer(token), timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise refused("auth", exc) from exc
        user = reply.user
        return Profile(
            user.user_id, user.tron_address, user.username, int(user.role), user.totp_enabled
        )


@dataclass(frozen=True)
class ChainView:
    """What admin shows of the chain."""

    state: str
    local_height: int
    final_height: int
    network_height: int
    pending_transactions: int
    latest_block_time: datetime | None


class MeshReader:
    """Health checks of every cluster and the chain's status, as the admin service."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels

    async def serving(self, cluster: str) -> str:
        """An empty string when the cluster serves, else why not."""
        try:
            stub = await self._channels.stub(cluster, health_pb2_grpc.HealthStub)
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
        except (UnavailableClusterError, OSError) as exc:
            return str(exc) or type(exc).__name__
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
        return ""

    async def chain(self) -> ChainView | None:
        """GetChainStatus; None if the chain does not answer."""
        try:
            stub = await self._channels.stub(
                "blockchain", blockchain_pb2_grpc.BlockchainServiceStub
            )
            reply = await stub.GetChainStatus(
                blockchain_pb2.GetChainStatusRequest(), timeout=HEALTH_TIMEOUT_S
            )
        except (grpc.aio.AioRpcError, UnavailableClusterError, OSError):
            return None
        return ChainView(
            state=blockchain_pb2.ChainStatus.Name(reply.status)
            .removeprefix("CHAIN_STATUS_")
            .lower(),
            local_height=reply.current_height,
            final_height=reply.final_height,
            network_height=reply.network_height,
            pending_transactions=reply.pending_transactions,
            latest_block_time=moment(reply.latest_block_time)
            if reply.HasField("latest_block_time")
            else None,
        )


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
