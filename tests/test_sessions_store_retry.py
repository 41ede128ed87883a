"""A busy store never fails a finalization (issue 8, item 5): transient store errors
(FerretDB's ``database is locked`` on SQLite, a dropped connection) met while a stopped
session is finalized, in the sessions cluster or in the chain, are retried with backoff,
spend no anchoring attempt, and the session completes. Other store errors are not
mistaken for transient ones."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import grpc
import pytest
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteError,
)

from lucid.auth.v1 import auth_pb2, auth_pb2_grpc
from lucid.runtime.config import Settings
from lucid.runtime.errors import ErrorCode, LucidError
from lucid.runtime.server import ClusterApp, Runtime
from lucid.runtime.storeerrors import Backoff, is_transient
from lucid.runtime.tokens import CallbackKeySource
from lucid.sessions.servicers.sessions import SessionServicer
from lucid.sessions.v1 import sessions_pb2
from lucid.supervisor.localservers import free_port
from tests.sessionkit import SessionsEnv, start_env
from tests.support import Mesh, details


def own_database(settings: Settings) -> Settings:
    """A database of its own: a sessions server of another module on the shared database
    would claim (and finalize) the sessions these tests stop, so the scripted store
    errors would never be met (it happened once in a full run)."""
    return settings.replace(mongodb_db=f"{settings.mongodb_db}_{uuid.uuid4().hex[:6]}")


BUSY = OperationFailure("database is locked (5) (SQLITE_BUSY)", code=1)
ADDRESS = "TJw1nrK1G5ugxRAuVPUFTcHrSZM8AjjKaH"


class FlakyRepository:
    """The sessions repository, but the first calls of some methods fail as a busy store
    does (the call does not reach the store)."""

    def __init__(self, repo: Any, failures: dict[str, list[Exception]]) -> None:
        self._repo = repo
        self.failures = failures
        self.raised = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._repo, name)
        pending = self.failures.get(name)
        if not pending:
            return target

        def failing(*args: Any, **kwargs: Any) -> Any:
            if pending:
                self.raised += 1
                raise pending.pop(0)
            return target(*args, **kwargs)

        return failing


def test_transient_store_errors_are_told_apart() -> None:
    assert is_transient(BUSY)
    assert is_transient(AutoReconnect("connection closed"))
    assert is_transient(ServerSelectionTimeoutError("no server"))
    assert is_transient(OperationFailure("stepping down", code=189))
    assert not is_transient(DuplicateKeyError("E11000 duplicate key", code=11000))
    assert not is_transient(WriteError("document failed validation", code=121))
    assert not is_transient(ValueError("database is locked"))  # not a store error
    assert is_transient(LucidError(ErrorCode.ERROR_CODE_DATABASE_UNAVAILABLE, "store down"))
    assert not is_transient(LucidError(ErrorCode.ERROR_CODE_NOT_FOUND, "no such session"))


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    backoff = Backoff(initial_s=0.05, max_s=0.3)
    assert [backoff.next_s() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    backoff.reset()
    assert backoff.next_s() == 0.05


async def _record_stop_and_end(own: SessionsEnv, chunks: int) -> sessions_pb2.Session:
    """Records ``chunks`` chunks, stops, and waits until the session completed or failed;
    then stops the environment."""
    try:
        md = await own.token()
        session_id = await own.recording(md)
        for seq in range(1, chunks + 1):
            await own.upload(md, session_id, seq, f"chunk {seq}".encode() * 100)
        await own.sessions.StopRecording(
            sessions_pb2.StopRecordingRequest(session_id=session_id), metadata=md
        )
        return await own.wait_state(
            md,
            session_id,
            {sessions_pb2.SESSION_STATE_COMPLETED, sessions_pb2.SESSION_STATE_FAILED},
        )
    finally:
        await own.channel.close()
        await own.mesh.stop_all()


async def test_a_busy_store_delays_but_never_fails_a_finalization(
    mesh: Mesh, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    own = await start_env(mesh, own_database(settings))
    servicer = next(
        s for _, s in own.mesh.servers["sessions"].app.servicers if isinstance(s, SessionServicer)
    )
    finalizer = servicer.manifests.finalizer
    flaky = FlakyRepository(
        finalizer.repo,
        {
            "claim_for_work": [BUSY, AutoReconnect("connection reset")],
            "insert_manifest": [BUSY],
            "update_session": [BUSY, BUSY],
            "update_manifest": [BUSY],
        },
    )
    finalizer.repo = flaky  # type: ignore[assignment]
    caplog.set_level(logging.WARNING, logger="lucid.sessions.finalize")
    session = await _record_stop_and_end(own, chunks=3)
    assert session.state == sessions_pb2.SESSION_STATE_COMPLETED, session.error_message
    assert session.anchoring.attempts == 0
    assert not any(flaky.failures.values()), flaky.failures
    assert flaky.raised == 6
    messages = [r.getMessage() for r in caplog.records]
    assert "finalization failed unexpectedly" not in messages
    assert messages.count("finalization step deferred: the store is busy") == 6


class LostManifestLink(FlakyRepository):
    """The store goes away right after the manifest is stored, before the session names
    it (as when FerretDB or the sessions process is SIGKILLed in that window)."""

    def __init__(self, repo: Any) -> None:
        super().__init__(repo, {})
        self.dropped = 0

    async def update_session(self, session_id: str, changes: Any, **kwargs: Any) -> Any:
        if "manifest_id" in changes and not self.dropped:
            self.dropped += 1
            raise AutoReconnect("connection closed")
        return await self._repo.update_session(session_id, changes, **kwargs)


async def test_a_store_lost_after_the_manifest_still_completes_with_its_root(
    mesh: Mesh, settings: Settings
) -> None:
    """Found by the chaos suite: a session whose manifest was stored but not yet linked
    when the store dropped completed with an empty Merkle root. The retried step links
    the stored manifest to its session."""
    own = await start_env(mesh, own_database(settings))
    servicer = next(
        s for _, s in own.mesh.servers["sessions"].app.servicers if isinstance(s, SessionServicer)
    )
    finalizer = servicer.manifests.finalizer
    lost = LostManifestLink(finalizer.repo)
    finalizer.repo = lost  # type: ignore[assignment]
    try:
        md = await own.token()
        session_id = await own.recording(md)
        for seq in (1, 2, 3):
            await own.upload(md, session_id, seq, f"chunk {seq}".encode() * 100)
        await own.sessions.StopRecording(
            sessions_pb2.StopRecordingRequest(session_id=session_id), metadata=md
        )
        session = await own.wait_state(
            md,
            session_id,
            {sessions_pb2.SESSION_STATE_COMPLETED, sessions_pb2.SESSION_STATE_FAILED},
        )
        manifest = await lost.manifest_of(session_id)
    finally:
        await own.channel.close()
        await own.mesh.stop_all()
    assert lost.dropped == 1
    assert session.state == sessions_pb2.SESSION_STATE_COMPLETED, session.error_message
    assert manifest is not None
    assert session.merkle_root == manifest["merkle_root"] != ""
    assert session.manifest_id == manifest["_id"]
    assert own.fake is not None
    assert own.fake.records[session_id].merkle_root == session.merkle_root


async def test_a_busy_store_on_the_chain_spends_no_anchoring_attempt(
    mesh: Mesh, settings: Settings
) -> None:
    """The chain's pipeline answers a transient store error with UNAVAILABLE 5003 (not
    INTERNAL); finalization tries again later without counting it as an attempt."""
    own = await start_env(mesh, own_database(settings))
    own.fake.busy_calls = 4  # more than the three attempts a session has
    session = await _record_stop_and_end(own, chunks=1)
    assert session.state == sessions_pb2.SESSION_STATE_COMPLETED, session.error_message
    assert session.anchoring.attempts == 0
    assert own.fake.busy_calls == 0


class BusyAuth(auth_pb2_grpc.AuthServiceServicer):
    """IssueChallenge meets a busy store."""

    async def IssueChallenge(self, request, context):  # type: ignore[no-untyped-def]
        raise BUSY


async def test_a_busy_store_answers_unavailable_5003_with_retry_after(settings: Settings) -> None:
    """Not INTERNAL with a traceback: the request was fine, the caller may send it again."""
    own = settings.replace(ports={**settings.ports, "auth": free_port()})

    async def build(runtime: Runtime) -> ClusterApp:
        async def no_keys() -> list:  # type: ignore[type-arg]
            return []

        return ClusterApp(
            servicers=[(auth_pb2_grpc.add_AuthServiceServicer_to_server, BusyAuth())],
            requires_mongo=False,
            key_source=CallbackKeySource(no_keys),
        )

    server = Mesh(own)
    await server.start("auth", build)
    try:
        async with server.channel("auth") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await auth_pb2_grpc.AuthServiceStub(channel).IssueChallenge(
                    auth_pb2.IssueChallengeRequest(tron_address=ADDRESS)
                )
    finally:
        await server.stop_all()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = details(caught.value)
    assert info.reason == "LUCID_ERR_5003" and info.retry_after_s == 1.0
