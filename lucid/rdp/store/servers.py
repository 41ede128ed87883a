"""Servers (``rdp_servers``) and their port claims (``rdp_port_claims``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lucid.rdp import schema
from lucid.rdp.records import ServerRecord


def _query(user_id: str, states: Sequence[str]) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if user_id:
        query["user_id"] = user_id
    if states:
        query["state"] = {"$in": list(states)}
    return query


class ServerStore:
    """Reads and writes server records; claims and releases ports."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._servers = db[schema.SERVERS]
        self._ports = db[schema.PORT_CLAIMS]

    async def claimed_ports(self) -> set[int]:
        """Every port some server holds."""
        return {int(doc["_id"]) async for doc in self._ports.find({}, {"_id": 1})}

    async def claim_port(self, port: int, server_id: str) -> bool:
        """Claims ``port`` for a server; False if another server holds it."""
        try:
            await self._ports.insert_one({"_id": port, "server_id": server_id})
        except DuplicateKeyError:
            return False
        return True

    async def release_ports(self, server_id: str) -> None:
        """Releases the ports of a server."""
        await self._ports.delete_many({"server_id": server_id})

    async def insert(self, record: ServerRecord) -> None:
        """Stores a new server."""
        await self._servers.insert_one(record.doc())

    async def get(self, server_id: str) -> ServerRecord | None:
        """A server, or None."""
        doc = await self._servers.find_one({"_id": server_id})
        return ServerRecord.of(doc) if doc else None

    async def update(self, server_id: str, changes: dict[str, Any]) -> ServerRecord | None:
        """Sets fields of a server; the updated record."""
        await self._servers.update_one({"_id": server_id}, {"$set": changes})
        return await self.get(server_id)

    async def transition(
        self, server_id: str, from_states: tuple[str, ...], changes: dict[str, Any]
    ) -> bool:
        """Sets fields only if the server is in one of ``from_states``; whether it was."""
        result = await self._servers.update_one(
            {"_id": server_id, "state": {"$in": list(from_states)}}, {"$set": changes}
        )
        return result.modified_count == 1

    async def delete(self, server_id: str) -> None:
        """Removes a server."""
        await self._servers.delete_one({"_id": server_id})

    async def count(self, *, user_id: str = "", states: Sequence[str] = ()) -> int:
        """How many servers match (all when no filter is given)."""
        return await self._servers.count_documents(_query(user_id, states))

    async def find(
        self,
        *,
        user_id: str = "",
        states: Sequence[str] = (),
        offset: int = 0,
        limit: int = 0,
    ) -> list[ServerRecord]:
        """Servers of a user and in some states (empty: any), newest first."""
        query = _query(user_id, states)
        cursor = self._servers.find(query).sort([("created_at", DESCENDING)]).skip(offset)
        if limit:
            cursor = cursor.limit(limit)
        return [ServerRecord.of(doc) async for doc in cursor]
