"""MongoDB access of the sessions cluster: sessions, chunks, manifests, pipelines,
events and trust policies. No rules here: the service modules decide, this module
reads and writes. Moves between states are conditional updates (the expected
states in the filter), so two callers can never both win a transition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.write_concern import WriteConcern

from lucid.sessions import schema

Doc = dict[str, Any]
DURABLE = WriteConcern(w=1, j=True)
"""Acknowledged only once the write is in the journal."""


class Repository:
    """The cluster's collections."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.sessions = db.get_collection(schema.SESSIONS, write_concern=DURABLE)
        self.chunks = db.get_collection(schema.CHUNKS, write_concern=DURABLE)
        self.manifests = db.get_collection(schema.MANIFESTS, write_concern=DURABLE)
        self.pipelines = db[schema.PIPELINES]
        self.events = db[schema.EVENTS]
        self.keys = db.get_collection(schema.KEYS, write_concern=DURABLE)
        self.policies = db[schema.TRUST_POLICIES]

    # -- sessions ---------------------------------------------------------------

    async def insert_session(self, doc: Doc) -> None:
        """Stores a new session (DuplicateKeyError when the id is taken)."""
        await self.sessions.insert_one(doc)

    async def session(self, session_id: str) -> Doc | None:
        """A session by id."""
        return await self.sessions.find_one({"_id": session_id})

    async def list_sessions(
        self, query: Mapping[str, Any], sort: list[tuple[str, int]], skip: int, limit: int
    ) -> tuple[list[Doc], int]:
        """A page of sessions and the number matching."""
        total = await self.sessions.count_documents(dict(query))
        cursor = self.sessions.find(dict(query), sort=sort, skip=skip, limit=limit)
        return [doc async for doc in cursor], total

    async def count_by_state(self) -> dict[str, int]:
        """How many sessions are in each state (for the metrics)."""
        cursor = await self.sessions.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}])
        return {str(d["_id"]): int(d["n"]) async for d in cursor}

    async def sessions_where(
        self, query: Mapping[str, Any], projection: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Doc]:
        """Every session matching ``query``."""
        async for doc in self.sessions.find(dict(query), projection=projection):
            yield doc

    async def update_session(
        self,
        session_id: str,
        changes: Mapping[str, Any],
        *,
        states: Collection[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        """Sets ``changes`` if the session is in one of ``states``; the updated session or None."""
        query: Doc = {"_id": session_id}
        if states is not None:
            query["state"] = {"$in": list(states)}
        update: Doc = {"$set": dict(changes), **(extra or {})}
        return await self.sessions.find_one_and_update(
            query, update, return_document=ReturnDocument.AFTER
        )

    async def raise_statistics(self, session_id: str, stats: Mapping[str, Any]) -> None:
        """Raises the session's counters to ``stats`` (counters only grow)."""
        await self.sessions.update_one(
            {"_id": session_id}, {"$max": {f"stats.{k}": v for k, v in stats.items()}}
        )

    async def claim_for_work(
        self, session_id: str, owner: str, now: datetime, until: datetime
    ) -> Doc | None:
        """Takes the finalization lease of a session unless another worker holds it."""
        return await self.sessions.find_one_and_update(
            {
                "_id": session_id,
                "$or": [{"lease.until": {"$lte": now}}, {"lease.owner": owner}, {"lease": None}],
            },
            {"$set": {"lease": {"owner": owner, "until": until}}},
            return_document=ReturnDocument.AFTER,
        )

    # -- chunks -----------------------------------------------------------------

    async def insert_chunk(self, doc: Doc) -> None:
        """Stores a chunk row durably (DuplicateKeyError when its sequence is taken)."""
        await self.chunks.insert_one(doc)

    async def chunk_at(self, session_id: str, sequence_number: int) -> Doc | None:
        """The chunk with a sequence number."""
        return await self.chunks.find_one(
            {"session_id": session_id, "sequence_number": sequence_number}
        )

    async def last_chunk(self, session_id: str) -> Doc | None:
        """The chunk with the highest sequence number."""
        return await self.chunks.find_one(
            {"session_id": session_id}, sort=[("sequence_number", DESCENDING)]
        )

    async def chunk(self, session_id: str, chunk_id: str) -> Doc | None:
        """A chunk by id within its session."""
        return await self.chunks.find_one({"_id": chunk_id, "session_id": session_id})

    async def list_chunks(
        self, query: Mapping[str, Any], skip: int, limit: int
    ) -> tuple[list[Doc], int]:
        """A page of chunks in sequence order and the number matching."""
        total = await self.chunks.count_documents(dict(query))
        cursor = self.chunks.find(
            dict(query), sort=[("sequence_number", ASCENDING)], skip=skip, limit=limit
        )
        return [doc async for doc in cursor], total

    async def chunks_of(self, session_id: str) -> list[Doc]:
        """Every chunk of a session in sequence order."""
        cursor = self.chunks.find({"session_id": session_id}, sort=[("sequence_number", ASCENDING)])
        return [doc async for doc in cursor]

    async def delete_chunk_rows(self, session_id: str) -> int:
        """Removes a session's chunk rows."""
        return (await self.chunks.delete_many({"session_id": session_id})).deleted_count

    # -- manifests --------------------------------------------------------------

    async def insert_manifest(self, doc: Doc) -> None:
        """Stores a manifest (DuplicateKeyError when the session has one)."""
        await self.manifests.insert_one(doc)

    async def manifest_of(self, session_id: str) -> Doc | None:
        """The manifest of a session."""
        return await self.manifests.find_one({"session_id": session_id})

    async def manifest(self, manifest_id: str) -> Doc | None:
        """A manifest by id."""
        return await self.manifests.find_one({"_id": manifest_id})

    async def update_manifest(self, manifest_id: str, changes: Mapping[str, Any]) -> None:
        """Sets fields of a manifest."""
        await self.manifests.update_one({"_id": manifest_id}, {"$set": dict(changes)})

    async def delete_manifest(self, session_id: str) -> None:
        """Removes a session's manifest."""
        await self.manifests.delete_many({"session_id": session_id})

    # -- pipelines --------------------------------------------------------------

    async def pipeline(self, session_id: str) -> Doc | None:
        """A session's pipeline."""
        return await self.pipelines.find_one({"_id": session_id})

    async def upsert_pipeline(self, session_id: str, changes: Mapping[str, Any]) -> None:
        """Creates or changes a pipeline."""
        await self.pipelines.update_one({"_id": session_id}, {"$set": dict(changes)}, upsert=True)

    async def update_pipeline(
        self, session_id: str, changes: Mapping[str, Any], states: Collection[str]
    ) -> Doc | None:
        """Changes a pipeline in one of ``states``; the updated pipeline or None."""
        return await self.pipelines.find_one_and_update(
            {"_id": session_id, "state": {"$in": list(states)}},
            {"$set": dict(changes)},
            return_document=ReturnDocument.AFTER,
        )

    async def count_stage(self, session_id: str, increments: Mapping[str, float]) -> None:
        """Adds to a pipeline's stage counters."""
        await self.pipelines.update_one({"_id": session_id}, {"$inc": dict(increments)})

    async def delete_pipeline(self, session_id: str) -> None:
        """Removes a session's pipeline."""
        await self.pipelines.delete_many({"_id": session_id})

    # -- events -----------------------------------------------------------------

    async def insert_event(self, doc: Doc) -> None:
        """Stores an audit event."""
        await self.events.insert_one(doc)

    async def list_events(
        self, query: Mapping[str, Any], skip: int, limit: int
    ) -> tuple[list[Doc], int]:
        """A page of events, newest first, and the number matching."""
        total = await self.events.count_documents(dict(query))
        cursor = self.events.find(
            dict(query), sort=[("event_time", DESCENDING)], skip=skip, limit=limit
        )
        return [doc async for doc in cursor], total

    # -- trust policies ---------------------------------------------------------

    async def insert_policy(self, doc: Doc) -> None:
        """Stores a trust policy."""
        await self.policies.insert_one(doc)

    async def policy(self, policy_id: str) -> Doc | None:
        """A trust policy by id."""
        return await self.policies.find_one({"_id": policy_id})

    async def count_policies(self, owner_user_id: str) -> int:
        """How many policies a user holds."""
        return await self.policies.count_documents({"owner_user_id": owner_user_id})

    async def list_policies(
        self, owner_user_id: str, skip: int, limit: int
    ) -> tuple[list[Doc], int]:
        """A page of a user's policies, oldest first."""
        query = {"owner_user_id": owner_user_id}
        total = await self.policies.count_documents(query)
        cursor = self.policies.find(query, sort=[("created_at", ASCENDING)], skip=skip, limit=limit)
        return [doc async for doc in cursor], total

    async def replace_policy(self, policy_id: str, changes: Mapping[str, Any]) -> Doc | None:
        """Changes a policy; the updated policy or None."""
        return await self.policies.find_one_and_update(
            {"_id": policy_id}, {"$set": dict(changes)}, return_document=ReturnDocument.AFTER
        )

    async def delete_policy(self, policy_id: str) -> bool:
        """Removes a policy; whether it existed."""
        return (await self.policies.delete_one({"_id": policy_id})).deleted_count == 1
