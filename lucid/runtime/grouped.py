"""Group commit of inserts into one collection (``GroupedInserts``).

Documents inserted while an insert is on its way to the store are queued and go
together in the next ``insert_many`` (unordered); each caller waits for the batch that
holds its document and gets what happened to that document alone: nothing, or the
error its write met (``DuplicateKeyError`` for a duplicate key, as ``insert_one``
raises it). A document is in the store when its ``insert`` returns, as with
``insert_one``, but concurrent writers share round trips. One writer alone is not
delayed: its document goes at once, in a batch of its own. A caller cancelled while
waiting does not take its document back: it is written all the same.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

DUPLICATE_KEY = 11000
MAX_BATCH = 500
"""The most documents one ``insert_many`` carries."""


def _write_error(error: dict[str, Any]) -> WriteError:
    """The error ``insert_one`` would have raised for one failed document of a batch."""
    code = int(error.get("code", 0))
    message = str(error.get("errmsg", ""))
    if code == DUPLICATE_KEY:
        return DuplicateKeyError(message, code, error)
    return WriteError(message, code, error)


class GroupedInserts:
    """Inserts into one collection, grouped while the previous batch is under way."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self.collection = collection
        self._queued: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, doc: dict[str, Any]) -> None:
        """Inserts ``doc`` (with whatever else is queued); raises what its write raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((doc, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        await asyncio.shield(done)  # a cancelled caller leaves its document to be written

    async def _write_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
            failed: dict[int, BaseException] = {}
            try:
                await self.collection.insert_many([doc for doc, _ in batch], ordered=False)
            except BulkWriteError as exc:  # some documents failed: those alone
                for error in exc.details.get("writeErrors", ()):
                    failed[int(error["index"])] = _write_error(error)
                if not failed:
                    failed = dict.fromkeys(range(len(batch)), exc)
            except Exception as exc:  # the batch did not go (store down): every caller
                failed = dict.fromkeys(range(len(batch)), exc)
            for index, (_, done) in enumerate(batch):
                if done.done():
                    continue
                if index in failed:
                    done.set_exception(failed[index])
                else:
                    done.set_result(None)
