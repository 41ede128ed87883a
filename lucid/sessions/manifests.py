"""Manifests, Merkle roots and finalization as the rpcs ask for them: who may see a
manifest, when one may be built, and finalizing or re-anchoring a session now
(the work itself is ``finalize.Finalizer``'s)."""

from __future__ import annotations

from lucid.runtime.errors import ErrorCode, LucidError, not_found
from lucid.sessions.finalize import Finalizer
from lucid.sessions.service import Caller, Sessions
from lucid.sessions.states import State
from lucid.sessions.store.repository import Doc


class Manifests:
    """Builds and reads manifests; finalizes sessions on request."""

    def __init__(self, sessions: Sessions, finalizer: Finalizer) -> None:
        self.sessions = sessions
        self.finalizer = finalizer
        self.repo = sessions.repo

    async def create(self, session_id: str, caller: Caller) -> tuple[Doc, list[Doc]]:
        """The manifest of a stopped session, built now; ALREADY_EXISTS if it has one."""
        session = await self.sessions.get(session_id, caller)
        if session["state"] not in (State.STOPPED, State.PROCESSING):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"a manifest is built for a stopped session, not one that is {session['state']}",
                metadata={"state": str(session["state"])},
            )
        if await self.repo.manifest_of(session_id) is not None:
            raise LucidError(
                ErrorCode.ERROR_CODE_ALREADY_EXISTS, f"session {session_id} already has a manifest"
            )
        manifest = await self.finalizer.ensure_manifest(session)
        return manifest, await self.repo.chunks_of(session_id)

    async def get(
        self, manifest_id: str, session_id: str, caller: Caller, *, with_chunks: bool
    ) -> tuple[Doc, list[Doc] | None]:
        """A manifest by id or by session, if the caller may see its session."""
        manifest = (
            await self.repo.manifest(manifest_id)
            if manifest_id
            else await self.repo.manifest_of(session_id)
        )
        name = manifest_id or f"of session {session_id}"
        if manifest is None:
            raise not_found(f"manifest {name}")
        try:
            await self.sessions.get(manifest["session_id"], caller)
        except LucidError:
            raise not_found(f"manifest {name}") from None
        chunks = await self.repo.chunks_of(manifest["session_id"]) if with_chunks else None
        return manifest, chunks

    async def of_session(self, session_id: str, caller: Caller) -> Doc:
        """The manifest holding a session's Merkle root; INVALID_STATE before there is one."""
        session = await self.sessions.get(session_id, caller)
        manifest = await self.repo.manifest_of(session_id)
        if manifest is None:
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"session {session_id} has no Merkle root yet",
                metadata={"state": str(session["state"])},
            )
        return manifest

    async def finalize(self, session_id: str) -> Doc:
        """Stops a recording session if need be and runs a finalization step now."""
        doc = await self.repo.session(session_id)
        if doc is None:
            raise not_found(f"session {session_id}")
        if doc["state"] in (State.RECORDING, State.PAUSED):
            await self.sessions.stop(session_id, None)
        elif doc["state"] in (State.CREATED, State.STARTING, State.DELETED):
            raise LucidError(
                ErrorCode.ERROR_CODE_INVALID_STATE,
                f"cannot finalize a session that is {doc['state']}",
                metadata={"state": str(doc["state"])},
            )
        if doc["state"] in (State.STOPPED, State.RECORDING, State.PAUSED):
            await self.finalizer.step(session_id)
            self.finalizer.wake(session_id)
        current = await self.repo.session(session_id)
        assert current is not None
        return current

    async def retry_anchoring(self, session_id: str, caller: Caller) -> Doc:
        """Anchors a session whose anchoring failed again (audited)."""
        await self.sessions.get(session_id, caller)
        doc = await self.finalizer.retry(session_id)
        await self.sessions.audit("session.anchor_retry", session_id, caller)
        return doc
