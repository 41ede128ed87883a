"""``service_mesh_policies``: traffic and security policies (``type`` tells which)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lucid.mesh import schema
from lucid.mesh.store import DuplicateError, MessageT, from_doc, to_doc
from lucid.runtime.datastores import find_page


class PolicyStore:
    """Stores policies of either kind as their proto message."""

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.collection = db[schema.POLICIES]

    async def insert(self, kind: str, policy: Any) -> None:
        """Stores a new policy; raises ``DuplicateError`` for a taken name."""
        try:
            await self.collection.insert_one(
                {
                    "type": kind,
                    "policy_id": policy.policy_id,
                    "name": policy.name,
                    "priority": policy.priority,
                    "enabled": policy.enabled,
                    "doc": to_doc(policy),
                }
            )
        except DuplicateKeyError:
            raise DuplicateError(policy.name) from None

    @staticmethod
    def _query(kind: str, enabled_only: bool) -> dict[str, Any]:
        query: dict[str, Any] = {"type": kind}
        if enabled_only:
            query["enabled"] = True
        return query

    async def page(
        self, kind: str, cls: type[MessageT], *, enabled_only: bool, offset: int, limit: int
    ) -> tuple[list[MessageT], int]:
        """A page of policies of one type, highest priority first, and how many there are."""
        docs, total = await find_page(
            self.collection,
            self._query(kind, enabled_only),
            [("priority", -1), ("name", 1)],
            offset=offset,
            limit=limit,
            projection={"_id": 0},
        )
        return [from_doc(doc["doc"], cls) for doc in docs], total

    async def delete(self, kind: str, policy_id: str) -> bool:
        """Removes a policy; whether it existed."""
        result = await self.collection.delete_one({"type": kind, "policy_id": policy_id})
        return result.deleted_count == 1
