"""Registration stakes (``node_stakes``): which node each verified stake transaction backs.

The transaction id is the document id, so one stake can back one node only: a second
claim of it is a ``DuplicateError``, whoever makes it and however concurrently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection

from lucid.nodes.store import Doc, from_doc, to_doc, translated


@dataclass(frozen=True)
class StakeRecord:
    """A stake transaction and the node it backs."""

    tx_id: str
    node_id: str
    node_address: str
    amount_micros: int
    claimed_at: datetime


class StakeStore:
    """Reads and claims stakes."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._c = collection

    async def get(self, tx_id: str) -> StakeRecord | None:
        """The claim on a stake transaction, if any."""
        with translated():
            doc = await self._c.find_one({"_id": tx_id})
        return from_doc(StakeRecord, doc, "tx_id") if doc else None

    async def claim(self, record: StakeRecord) -> None:
        """Binds a stake to its node; ``DuplicateError`` when it backs a node already."""
        with translated():
            await self._c.insert_one(to_doc(record, "tx_id"))

    async def release(self, tx_id: str, node_id: str) -> None:
        """Undoes a claim whose node could not be stored."""
        with translated():
            await self._c.delete_one({"_id": tx_id, "node_id": node_id})
