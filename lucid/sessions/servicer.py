"""gRPC adapters of the sessions contract: SessionService and ManifestService.

Each rpc reads its request, asks the service modules, and answers with messages;
refusals are ``LucidError``s. Ownership: users act on their own sessions, admins
on anyone's, services (rdp, admin) as the contract allows.
"""

from __future__ import annotations

import grpc

from lucid.runtime import paging
from lucid.runtime.audit import client_of
from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.runtime.wire import duration, optional_timestamp
from lucid.sessions import convert
from lucid.sessions.finalize import Finalizer
from lucid.sessions.repository import Doc
from lucid.sessions.service import Caller, Sessions
from lucid.sessions.states import State
from lucid.sessions.v1 import manifests_pb2, manifests_pb2_grpc, sessions_pb2, sessions_pb2_grpc

_ORDERS = {
    sessions_pb2.SESSION_ORDER_UNSPECIFIED: [("created_at", -1)],
    sessions_pb2.SESSION_ORDER_CREATE_TIME_DESC: [("created_at", -1)],
    sessions_pb2.SESSION_ORDER_CREATE_TIME_ASC: [("created_at", 1)],
    sessions_pb2.SESSION_ORDER_UPDATE_TIME_DESC: [("updated_at", -1)],
    sessions_pb2.SESSION_ORDER_NAME_ASC: [("name", 1)],
}
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


def caller_of(context: grpc.aio.ServicerContext) -> Caller:
    """The caller of the current rpc, with the client address as the edge reports it."""
    client = client_of(context)
    return Caller.of(client.principal, client.ip)


def recording_url(session_id: str) -> str:
    """Where a client feeds a recording: the UploadChunks stream of the session."""
    return f"grpc://sessions/lucid.sessions.v1.ChunkService/UploadChunks?session_id={session_id}"


class SessionServicer(sessions_pb2_grpc.SessionServiceServicer):
    """Sessions: CRUD, recording control, statistics, pipeline, events, finalization."""

    def __init__(self, sessions: Sessions, finalizer: Finalizer) -> None:
        self.sessions = sessions
        self.finalizer = finalizer

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
        query = self.sessions.owner_filter(caller, request.owner_user_id)
        if request.state:
            query["state"] = convert.state_name(request.state)
        else:
            query["state"] = {"$ne": State.DELETED.value}
        if request.project:
            query["metadata.project"] = request.project
        if request.environment:
            query["metadata.environment"] = request.environment
        if request.tag:
            query["metadata.tags"] = request.tag
        page = paging.page(request, scope=query)
        docs, total = await self.sessions.repo.list_sessions(
            query, _ORDERS[request.order], page.offset, page.size
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
        await self.sessions.get(request.session_id, caller_of(context))
        query: Doc = {"session_id": request.session_id}
        if request.event_type:
            query["event_type"] = request.event_type
        page = paging.page(request)
        docs, total = await self.sessions.repo.list_events(query, page.offset, page.size)
        return sessions_pb2.ListSessionEventsResponse(
            events=[convert.event(d) for d in docs],
            next_page_token=page.next_token(len(docs), total),
            total_size=total,
        )

    async def FinalizeSession(
        self, request: sessions_pb2.FinalizeSessionRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.FinalizeSessionResponse:
        doc = await self.sessions.repo.session(request.session_id)
        if doc is None:
            raise not_found(f"session {request.session_id}")
        if doc["state"] in (State.RECORDING, State.PAUSED):
            await self.sessions.stop(request.session_id, None)
        elif doc["state"] in (State.CREATED, State.STARTING, State.DELETED):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"cannot finalize a session that is {doc['state']}",
                metadata={"state": str(doc["state"])},
            )
        if doc["state"] in (State.STOPPED, State.RECORDING, State.PAUSED):
            await self.finalizer.step(request.session_id)
            self.finalizer.wake(request.session_id)
        current = await self.sessions.repo.session(request.session_id)
        assert current is not None
        return sessions_pb2.FinalizeSessionResponse(session=convert.session(current))

    async def RetryAnchoring(
        self, request: sessions_pb2.RetryAnchoringRequest, context: grpc.aio.ServicerContext
    ) -> sessions_pb2.RetryAnchoringResponse:
        caller = caller_of(context)
        await self.sessions.get(request.session_id, caller)
        doc = await self.finalizer.retry(request.session_id)
        await self.sessions.audit("session.anchor_retry", request.session_id, caller)
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
        revert = (
            request.auto_revert.ToTimedelta().total_seconds()
            if request.HasField("auto_revert")
            else None
        )
        result = await self.sessions.set_creation_enabled(request.enabled, revert)
        return sessions_pb2.SetSessionCreationEnabledResponse(
            enabled=result["enabled"], revert_time=optional_timestamp(result["revert_time"])
        )


class ManifestServicer(manifests_pb2_grpc.ManifestServiceServicer):
    """Manifests and Merkle roots."""

    def __init__(self, sessions: Sessions, finalizer: Finalizer) -> None:
        self.sessions = sessions
        self.finalizer = finalizer

    async def CreateManifest(
        self, request: manifests_pb2.CreateManifestRequest, context: grpc.aio.ServicerContext
    ) -> manifests_pb2.CreateManifestResponse:
        session = await self.sessions.get(request.session_id, caller_of(context))
        if session["state"] not in (State.STOPPED, State.PROCESSING):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"a manifest is built for a stopped session, not one that is {session['state']}",
                metadata={"state": str(session["state"])},
            )
        if await self.sessions.repo.manifest_of(request.session_id) is not None:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS,
                f"session {request.session_id} already has a manifest",
            )
        manifest = await self.finalizer.ensure_manifest(session)
        chunks = await self.sessions.repo.chunks_of(request.session_id)
        return manifests_pb2.CreateManifestResponse(manifest=convert.manifest(manifest, chunks))

    async def GetManifest(
        self, request: manifests_pb2.GetManifestRequest, context: grpc.aio.ServicerContext
    ) -> manifests_pb2.GetManifestResponse:
        repo = self.sessions.repo
        manifest = (
            await repo.manifest(request.manifest_id)
            if request.manifest_id
            else await repo.manifest_of(request.session_id)
        )
        name = request.manifest_id or f"of session {request.session_id}"
        if manifest is None:
            raise not_found(f"manifest {name}")
        try:
            await self.sessions.get(manifest["session_id"], caller_of(context))
        except LucidError:
            raise not_found(f"manifest {name}") from None
        chunks = None if request.summary_only else await repo.chunks_of(manifest["session_id"])
        return manifests_pb2.GetManifestResponse(manifest=convert.manifest(manifest, chunks))

    async def GetMerkleRoot(
        self, request: manifests_pb2.GetMerkleRootRequest, context: grpc.aio.ServicerContext
    ) -> manifests_pb2.GetMerkleRootResponse:
        session = await self.sessions.get(request.session_id, caller_of(context))
        manifest = await self.sessions.repo.manifest_of(request.session_id)
        if manifest is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"session {request.session_id} has no Merkle root yet",
                metadata={"state": str(session["state"])},
            )
        return manifests_pb2.GetMerkleRootResponse(
            session_id=request.session_id,
            merkle_root=manifest["merkle_root"],
            leaf_count=int(manifest["chunk_count"]),
            hash_algorithm=sessions_pb2.HASH_ALGORITHM_SHA256,
            manifest_id=manifest["_id"],
        )
