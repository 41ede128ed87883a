"""``lucid.sessions.v1.SessionService``: CRUD, recording control, statistics, pipeline,
events and finalization of recording sessions, translated to the domain."""

from __future__ import annotations

import grpc

from lucid.runtime import paging
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.wire import duration, optional_timestamp, seconds
from lucid.sessions import convert
from lucid.sessions.convert import caller as caller_of
from lucid.sessions.manifests import Manifests
from lucid.sessions.service import Sessions
from lucid.sessions.states import State
from lucid.sessions.store.repository import Doc
from lucid.sessions.v1 import sessions_pb2, sessions_pb2_grpc

_UPDATABLE = (
    "name",
    "description",
    "metadata",
    "trust_policy_id",
    "recording_config",
    "storage_config",
)


def _given(request: sessions_pb2.UpdateSessionRequest, name: str) -> bool:
    """Whether an update request carries a value for ``name``."""
    if name in ("metadata", "recording_config", "storage_config"):
        return request.HasField(name)  # type: ignore[arg-type]
    return bool(getattr(request, name))


def recording_url(session_id: str) -> str:
    """Where a client feeds a recording: the UploadChunks stream of the session."""
    return f"grpc://sessions/lucid.sessions.v1.ChunkService/UploadChunks?session_id={session_id}"


class SessionServicer(sessions_pb2_grpc.SessionServiceServicer):
    """Sessions: CRUD, recording control, statistics, pipeline, events, finalization."""

    def __init__(self, sessions: Sessions, manifests: Manifests) -> None:
        self.sessions = sessions
        self.manifests = manifests

    async def CreateSession(
        self, request: sessions_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.CreateSessionResponse:
        fields: Doc = {
            "session_id": request.session_id,
            "owner_user_id": request.owner_user_id,
            "name": request.name,
            "description": request.description,
            "rdp": convert.rdp_fields(request.rdp_config)
            if request.HasField("rdp_config")
            else None,
            "recording": convert.recording_fields(request.recording_config),
            "storage": convert.storage_fields(request.storage_config),
            "metadata": convert.metadata_fields(request.metadata),
            "trust_policy_id": request.trust_policy_id,
            "rdp_server_id": request.rdp_server_id,
        }
        doc = await self.sessions.create(fields, caller_of(context))
        return sessions_pb2.CreateSessionResponse(session=convert.session(doc))

    async def GetSession(
        self, request: sessions_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.GetSessionResponse:
        doc = await self.sessions.get(request.session_id, caller_of(context))
        return sessions_pb2.GetSessionResponse(session=convert.session(doc))

    async def ListSessions(
        self, request: sessions_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ListSessionsResponse:
        caller = caller_of(context)
        page = paging.page(request, scope=(caller.user_id, caller.is_admin, caller.service))
        docs, total = await self.sessions.page(
            caller,
            request.owner_user_id,
            convert.session_filter(request),
            convert.SESSION_ORDERS[request.order],
            offset=page.offset,
            limit=page.size,
        )
        return sessions_pb2.ListSessionsResponse(
            sessions=[convert.session(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    async def UpdateSession(
        self, request: sessions_pb2.UpdateSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.UpdateSessionResponse:
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        if not paths:
            paths = [name for name in _UPDATABLE if _given(request, name)]
        changes: Doc = {}
        for path in paths:
            if path == "name":
                if not request.name:
                    raise LucidError(
                        ErrorCode.ERROR_CODE_INVALID_ARGUMENT, "a name is 1 to 255 characters"
                    )
                changes["name"] = request.name
            elif path == "description":
                changes["description"] = request.description
            elif path == "metadata":
                changes["metadata"] = convert.metadata_fields(request.metadata)
            elif path == "trust_policy_id":
                changes["trust_policy_id"] = request.trust_policy_id
            elif path == "recording_config":
                changes["recording"] = convert.recording_fields(request.recording_config)
            elif path == "storage_config":
                changes["storage"] = convert.storage_fields(request.storage_config)
        doc = await self.sessions.update(request.session_id, changes, caller_of(context))
        return sessions_pb2.UpdateSessionResponse(session=convert.session(doc))

    async def DeleteSession(
        self, request: sessions_pb2.DeleteSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.DeleteSessionResponse:
        await self.sessions.delete(request.session_id, caller_of(context))
        return sessions_pb2.DeleteSessionResponse()

    async def StartRecording(
        self, request: sessions_pb2.StartRecordingRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.StartRecordingResponse:
        doc = await self.sessions.start(request.session_id, caller_of(context))
        url = recording_url(doc["_id"])
        return sessions_pb2.StartRecordingResponse(
            session=convert.session(doc, url), recording_url=url
        )

    async def StopRecording(
        self, request: sessions_pb2.StopRecordingRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.StopRecordingResponse:
        doc = await self.sessions.stop(request.session_id, caller_of(context))
        message = convert.session(doc)
        return sessions_pb2.StopRecordingResponse(
            session=message, final_statistics=message.statistics
        )

    async def PauseRecording(
        self, request: sessions_pb2.PauseRecordingRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.PauseRecordingResponse:
        doc = await self.sessions.pause(request.session_id, caller_of(context))
        return sessions_pb2.PauseRecordingResponse(session=convert.session(doc))

    async def ResumeRecording(
        self, request: sessions_pb2.ResumeRecordingRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ResumeRecordingResponse:
        doc = await self.sessions.resume(request.session_id, caller_of(context))
        return sessions_pb2.ResumeRecordingResponse(session=convert.session(doc))

    async def GetSessionStatistics(
        self, request: sessions_pb2.GetSessionStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.GetSessionStatisticsResponse:
        doc = await self.sessions.get(request.session_id, caller_of(context))
        return sessions_pb2.GetSessionStatisticsResponse(
            session_id=doc["_id"],
            state=convert.state_value(doc["state"]),
            statistics=convert.statistics(doc.get("stats") or {}),
        )

    async def GetAggregateStatistics(
        self,
        request: sessions_pb2.GetAggregateStatisticsRequest,
        context: grpc.aio.ServicerContext,
    ) -> sessions_pb2.GetAggregateStatisticsResponse:
        result = await self.sessions.aggregate(
            caller_of(context), request.owner_user_id, request.all_users
        )
        return sessions_pb2.GetAggregateStatisticsResponse(
            total_sessions=result["total"],
            by_state=[
                sessions_pb2.StateCount(state=convert.state_value(name), count=count)
                for name, count in sorted(result["by_state"].items())
            ],
            active_recordings=result["by_state"].get(State.RECORDING.value, 0),
            total_chunks=result["chunks"],
            total_stored_bytes=result["bytes"],
            total_duration=duration(result["duration_s"]),
        )

    async def GetPipeline(
        self, request: sessions_pb2.GetPipelineRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.GetPipelineResponse:
        doc = await self.sessions.pipeline(request.session_id, caller_of(context))
        return sessions_pb2.GetPipelineResponse(pipeline=convert.pipeline(doc))

    async def PausePipeline(
        self, request: sessions_pb2.PausePipelineRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.PausePipelineResponse:
        doc = await self.sessions.set_pipeline(request.session_id, caller_of(context), pause=True)
        return sessions_pb2.PausePipelineResponse(pipeline=convert.pipeline(doc))

    async def ResumePipeline(
        self, request: sessions_pb2.ResumePipelineRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ResumePipelineResponse:
        doc = await self.sessions.set_pipeline(request.session_id, caller_of(context), pause=False)
        return sessions_pb2.ResumePipelineResponse(pipeline=convert.pipeline(doc))

    async def ListSessionEvents(
        self, request: sessions_pb2.ListSessionEventsRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.ListSessionEventsResponse:
        page = paging.page(request)
        docs, total = await self.sessions.events(
            request.session_id,
            caller_of(context),
            request.event_type,
            offset=page.offset,
            limit=page.size,
        )
        return sessions_pb2.ListSessionEventsResponse(
            events=[convert.event(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    async def FinalizeSession(
        self, request: sessions_pb2.FinalizeSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.FinalizeSessionResponse:
        current = await self.manifests.finalize(request.session_id)
        return sessions_pb2.FinalizeSessionResponse(session=convert.session(current))

    async def RetryAnchoring(
        self, request: sessions_pb2.RetryAnchoringRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.RetryAnchoringResponse:
        doc = await self.manifests.retry_anchoring(request.session_id, caller_of(context))
        return sessions_pb2.RetryAnchoringResponse(session=convert.session(doc))

    async def StopAllRecordings(
        self, request: sessions_pb2.StopAllRecordingsRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.StopAllRecordingsResponse:
        stopped = await self.sessions.stop_all(caller_of(context))
        return sessions_pb2.StopAllRecordingsResponse(
            stopped_count=len(stopped), session_ids=stopped
        )

    async def SetSessionCreationEnabled(
        self,
        request: sessions_pb2.SetSessionCreationEnabledRequest,
        context: grpc.aio.ServicerContext,
    ) -> sessions_pb2.SetSessionCreationEnabledResponse:
        revert = seconds(request.auto_revert) if request.HasField("auto_revert") else None
        result = await self.sessions.set_creation_enabled(request.enabled, revert)
        return sessions_pb2.SetSessionCreationEnabledResponse(
            enabled=result["enabled"], revert_time=optional_timestamp(result["revert_time"])
        )
